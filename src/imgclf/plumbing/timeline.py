"""Where a stage's seconds go, for ``benchmarks/turnaround.py``: off unless ``IMGCLF_TIMELINE`` names a file.

With it set, every process that :func:`imgclf.plumbing.stage.run_stage` runs (the stage scripts and
the processes they start: the ONNX copy's, the heatmaps') appends one JSON line to that file: when
the process started (the kernel's clock), when its script's ``main`` began (Python's start-up and
the script's own imports before it), when it ended, and the seconds spent importing modules during
``main`` (the stages import Keras and most of the library there, lazily), and whether TensorFlow was
imported at all. Times are seconds since the epoch, so that the lines of several processes and of
DVC can be laid on one line of time.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TIMELINE_VARIABLE = "IMGCLF_TIMELINE"


@contextlib.contextmanager
def recording_timeline() -> Iterator[None]:
    """Record this process's line of the timeline around the block, where ``IMGCLF_TIMELINE`` asks for it."""
    destination = os.environ.get(TIMELINE_VARIABLE)
    if not destination:
        yield
        return
    age = seconds_since_process_start()
    entered = time.time()
    started = entered - (age or 0.0)  # where /proc cannot tell, the start-up shows as 0
    importing = _ImportClock()
    builtins.__import__ = importing
    try:
        yield
    finally:
        builtins.__import__ = importing.original
        record = {"script": sys.argv[0], "pid": os.getpid(), "started": started, "main": entered,
                  "ended": time.time(), "imports": round(importing.seconds, 3),
                  "tensorflow": "tensorflow" in sys.modules}
        with open(destination, "a", encoding="utf-8") as timeline:  # one short line: appends do not interleave
            timeline.write(json.dumps(record) + "\n")


class _ImportClock:
    """``builtins.__import__`` that adds up the time of the outermost imports (nested ones are inside them)."""

    def __init__(self) -> None:
        self.original = builtins.__import__
        self.seconds = 0.0
        self._depth = 0

    def __call__(self, *arguments: Any, **keywords: Any) -> Any:
        if self._depth:
            return self.original(*arguments, **keywords)
        self._depth += 1
        start = time.perf_counter()
        try:
            return self.original(*arguments, **keywords)
        finally:
            self._depth -= 1
            self.seconds += time.perf_counter() - start


def seconds_since_process_start() -> float | None:
    """Wall seconds since the kernel started this process (to its 10 ms clock tick), or None where
    /proc cannot tell (not Linux): what ``imgclf predict --verbose`` reports as its start-up too."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22: start time
    except (OSError, IndexError, ValueError):
        return None
    return max(time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK"), 0.0)
