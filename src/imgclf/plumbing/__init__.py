"""The plumbing every stage stands on: typed params, the stage runner, errors, atomic files, PNGs, DVC remotes."""
