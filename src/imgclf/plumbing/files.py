"""The I/O helpers the stages share: atomic outputs, JSON and CSV reports, file digests.

A stage builds each output under a temporary name beside it and renames it into place only when
the whole output is complete, so a run that fails or is killed never leaves a half-written output
that a later stage (or ``dvc commit``) could mistake for a good one.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import, before any thread starts: os.umask can only be read by setting it.
UMASK = _current_umask()


@contextlib.contextmanager
def naming_the_file(path: Path) -> Iterator[None]:
    """Give ``path`` to an ``OSError`` that names no file: a write through an open handle names none,
    and "cannot write an output: No space left on device" does not tell a person where to look."""
    try:
        yield
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error  # same subclass, by errno


def _process_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed process that nobody has reaped yet (where PID 1 does not reap orphans, as in some
    containers, it stays one): it answers signals, but it will never write again."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state == "Z"


def remove_abandoned_staging(final: Path) -> None:
    """Delete the staging folders a killed run left beside ``final`` (``.<name>.<pid>.*.partial`` of a
    process that no longer runs): no stage reads them, but a killed resize of a big dataset can
    leave gigabytes of shards there. A staging folder of a running process is left alone."""
    for staging in final.parent.glob(f".{glob.escape(final.name)}.*.partial"):
        pid = staging.name[len(final.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _process_is_alive(int(pid)):
            logger.info("removing %s, left by a run that was killed", staging)
            _remove(staging)


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces ``final`` only if the block succeeds.

    The folder is ``.<name>.<pid>.<random>.partial`` beside ``final``: a run killed before the end
    leaves it there, never at ``final``; the next run's :func:`remove_abandoned_staging` deletes it.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(final)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".partial", dir=final.parent))
    try:
        yield staging
        staging.chmod(0o777 & ~UMASK)  # mkdtemp makes it private; a plain mkdir would not
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _remove(final)
    staging.rename(final)


@contextlib.contextmanager
def atomic_file(final: Path, mode: str = "w", newline: str | None = None) -> Iterator[Any]:
    """Open a temporary file for writing that replaces ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    descriptor, staging = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with naming_the_file(Path(staging)), os.fdopen(descriptor, mode, encoding=encoding, newline=newline) as handle:
            yield handle
        os.chmod(staging, 0o666 & ~UMASK)  # mkstemp makes it private; a plain open would not
        os.replace(staging, final)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write JSON with a stable layout (sorted keys keep byte-identical reruns byte-identical)."""
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with atomic_file(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
