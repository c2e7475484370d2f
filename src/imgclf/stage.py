"""What every stage script does around its work: logging, and errors that read as advice."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from imgclf.errors import PipelineError


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main`` with logging configured; a :class:`PipelineError` exits 1 with its message."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        main()
    except PipelineError as error:
        logging.getLogger(main.__module__).error("%s", error)
        sys.exit(1)
