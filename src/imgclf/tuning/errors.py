"""The error of ``imgclf tune`` that a person fixes: its own module, so that the train stage's side of a
trial (:mod:`imgclf.tuning.trial`) needs no more of the search than this."""

from __future__ import annotations

from imgclf.plumbing.errors import PipelineError


class TuneError(PipelineError):
    """A search file, a storage or a metric that ``imgclf tune`` cannot use; the message says what to change."""
