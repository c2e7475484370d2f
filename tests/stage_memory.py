"""The peak resident memory of each pipeline stage, measured from outside while the real command runs.

A stage is the process whose command line runs one of its scripts (``stages/<name>.py``; the train
stage's second command, ``stages/onnx_copy.py``, counts as the train stage: :data:`STAGE_OF_SCRIPT`)
together with every process it starts (the resize stage's workers, the ONNX converter). Every
``SAMPLE_SECONDS`` the peak resident memory so far of each live process under the command (the
kernel's high-water mark, ``VmHWM``) is read and summed by stage; a stage's peak is the largest such
sum: what the machine had to hold at once, as the kernel's out-of-memory killer counts it, or a
little more where the processes' own peaks did not fall together. The high-water mark, not the
resident memory of the moment: a short-lived peak between two samples (the split stage's hashing
workers live only briefly at 128 photos) is not missed at one size and caught at the other, the
likely cause of the split stage seeming to grow by 1.18x in one CI run of many. Used by the CI memory
guard (tests/test_memory_guard.py) and by the memory benchmarks (benchmarks/streaming.py,
benchmarks/after_training.py).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

SAMPLE_SECONDS = 0.02
STAGE_SCRIPT = re.compile(r"stages/(\w+)\.py")
STAGE_OF_SCRIPT = {"onnx_copy": "train"}  # scripts that are not a stage of their own name (dvc.yaml)


@dataclass(frozen=True)
class MeasuredRun:
    """A finished command: its exit status, what it printed, and each stage's peak in bytes."""

    returncode: int
    output: str
    stage_peaks: dict[str, int]
    seconds: float


def _stage_of(process: psutil.Process, known: dict[int, str | None]) -> str | None:
    """The stage whose script ``process`` runs or descends from; None for DVC itself."""
    if process.pid in known:
        return known[process.pid]
    try:
        match = STAGE_SCRIPT.search(" ".join(process.cmdline()))
        parent = process.parent()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    if match:
        stage: str | None = STAGE_OF_SCRIPT.get(match.group(1), match.group(1))
    else:
        stage = _stage_of(parent, known) if parent is not None else None
    if stage is not None:  # not None: a process DVC has forked but not yet exec'd still shows DVC's command line
        known[process.pid] = stage
    return stage


def _peak_resident_bytes(process: psutil.Process) -> int:
    """The process's peak resident memory so far (Linux's ``VmHWM``); its resident memory now elsewhere."""
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
    except FileNotFoundError:
        raise psutil.NoSuchProcess(process.pid) from None
    except OSError:
        return process.memory_info().rss
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else process.memory_info().rss


def run_measuring_stages(args: Sequence[str], cwd: Path, env: Mapping[str, str], log: Path,
                         stage: str | None = None) -> MeasuredRun:
    """Run ``args`` (``dvc repro``, or one stage's command) in ``cwd``, its output into ``log``, sampling
    the memory of each stage it runs until it exits. ``stage`` names the command's own process (and
    what it starts) where its command line names no stage script (``python -c ...``)."""
    peaks: dict[str, int] = {}
    start = time.perf_counter()
    with open(log, "w") as output:
        command = psutil.Popen(list(args), cwd=cwd, env=dict(env), stdout=output, stderr=subprocess.STDOUT)
        known: dict[int, str | None] = {} if stage is None else {command.pid: stage}
        while command.poll() is None:
            totals: dict[str, int] = {}
            try:
                processes = [command, *command.children(recursive=True)]
            except psutil.NoSuchProcess:
                processes = []
            for process in processes:
                try:
                    running = _stage_of(process, known)
                    if running is not None:
                        totals[running] = totals.get(running, 0) + _peak_resident_bytes(process)
                except (psutil.NoSuchProcess, psutil.ZombieProcess):
                    continue  # it ended between the listing and the reading
            for running, total in totals.items():
                peaks[running] = max(peaks.get(running, 0), total)
            time.sleep(SAMPLE_SECONDS)
    return MeasuredRun(command.returncode, log.read_text(), peaks, time.perf_counter() - start)
