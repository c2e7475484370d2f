"""What every stage script does around its work: logging, and errors that read as advice."""

from __future__ import annotations

import atexit
import contextlib
import errno
import gc
import logging
import signal
import sys
from collections.abc import Callable, Iterator

from imgclf.plumbing.errors import PipelineError
from imgclf.plumbing.native_logs import quiet_native_logs
from imgclf.plumbing.timeline import recording_timeline


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main`` with logging configured, and the native libraries' start-up lines of a
    healthy machine left out (:mod:`imgclf.plumbing.native_logs`; ``IMGCLF_VERBOSE=1`` shows them).

    A :class:`PipelineError` (a mistake a person can fix), a full disk and a path the stage may not
    read or write exit 1 with a message that says which, instead of a traceback; outputs are built
    atomically, so nothing partial is left either way. Any other error is a bug: its traceback shows.

    At exit, once every output is written and closed, the process leaves what it holds to the
    operating system: Python's collections at exit would walk every object of the imported
    libraries for nothing, 1.2 s after Keras and TensorFlow and 0.3 s after the evaluate stage's
    libraries (AMD EPYC, 2 cores), which DVC waits for between the stages. Registered before ``main``
    imports them, the freeze runs after the libraries' own exit handlers (the last registered runs
    first); what it skips is only the collection of cyclic garbage, which the exit would free anyway.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # "Using categorical units..." at INFO
    logger = logging.getLogger(main.__module__)
    atexit.register(gc.freeze)  # at exit, after the libraries' own exit handlers: see above
    with quiet_native_logs(), recording_timeline():  # the timeline only where IMGCLF_TIMELINE asks for it
        _run_reporting_errors(main, logger)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Import a stage's libraries without Python's cyclic garbage collector running in between.

    While imports grow the heap, each full collection walks everything imported so far: importing
    Keras and TensorFlow (450,000 objects) ran 8 of them, 1.0 s of its 3.6 s (AMD EPYC, 2 cores).
    Paused, it frees the imports' cyclic garbage at its first run after the block instead, and the
    peak memory stays the same (786 against 783 MB after importing Keras; the memory guard's train
    peaks, 2,620 / 2,736 MB at 128 / 512 photos, against 2,652 / 2,663 MB unpaused in the same hour).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _run_reporting_errors(main: Callable[[], None], logger: logging.Logger) -> None:
    try:
        main()
    except PipelineError as error:
        logger.error("%s", error)
        sys.exit(1)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            logger.error("cannot write %s: %s. Free disk space (or raise the file size limit) and run again; "
                         "the stage kept no partial output.", error.filename or "an output", error.strerror)
        elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            logger.error("cannot access %s: %s. Check that you may read and write there (owner and mode, a "
                         "read-only file system, an immutable flag: lsattr) and run again; the stage kept no "
                         "partial output.", error.filename or "a file", error.strerror)
        else:
            raise
        sys.exit(1)


@contextlib.contextmanager
def optional_step(missing: str) -> Iterator[None]:
    """Run a step whose output the stage can do without (a figure, a diagram) after its essential
    outputs are written: if it fails, one line says that ``missing`` is missing and why, and the
    stage goes on. (The ONNX copy, which can run out of memory, has a process of its own.)"""
    logger = logging.getLogger(__name__)
    try:
        yield
    except MemoryError:
        logger.warning("no %s: out of memory; the stage's other outputs are written", missing)
    except Exception as error:  # a figure's failure is never worth the run: said, and left out
        logger.warning("no %s: %s: %s; the stage's other outputs are written", missing, type(error).__name__, error)


def exit_reason(returncode: int) -> str:
    """How a child process ended, for a log line: "was killed by SIGKILL (...)" or "failed (exit status 1; ...)"."""
    if returncode < 0:
        killer = signal.Signals(-returncode).name
        return f"was killed by {killer}" + (
            " (most often the kernel's out-of-memory killer: see `dmesg`, or free memory)"
            if returncode == -signal.SIGKILL else "")
    return f"failed (exit status {returncode}; its error is logged above)"
