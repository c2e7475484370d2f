"""The base of every error that a person can fix (a parameter, a folder, a too-small class)."""


class PipelineError(ValueError):
    """An input or setting the user can correct; the stage reports it without a traceback."""
