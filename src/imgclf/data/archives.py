"""Safe extraction of tar and zip archives, including archives nested in archives.

Tar archives go through Python's ``tarfile`` "data" filter, which refuses members outside the
destination, absolute paths, links that escape, and device files. Zip entries with ``..`` or an
absolute name, and zip symlinks, are refused too. The unpacked size is limited, counting the bytes
actually written, against archive bombs. Extraction happens in a temporary folder that is renamed
into place only when complete: a refused, truncated or corrupt archive leaves nothing behind.
"""

from __future__ import annotations

import logging
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from imgclf.plumbing.errors import PipelineError
from imgclf.plumbing.files import atomic_directory

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
CHUNK_BYTES = 1 << 20


class ArchiveError(PipelineError):
    """An archive is unsafe, too large, truncated or not an archive."""


def is_archive_name(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def extract(archive: Path, destination: Path, max_bytes: int) -> None:
    """Extract ``archive`` into the new folder ``destination``, all or nothing."""
    with atomic_directory(destination) as staging:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, staging, max_bytes)
        elif _is_tar(archive):
            _extract_tar(archive, staging, max_bytes)
        else:
            raise ArchiveError(f"{archive} is neither a zip nor a tar archive (or it is damaged).")


def extract_nested(archive: Path, destination: Path, max_bytes: int, depth: int = 3) -> None:
    """Extract ``archive``, then every archive inside it into a folder named after it, ``depth`` levels."""
    extract(archive, destination, max_bytes)
    unpacked_bytes = _size_of(destination)
    for _ in range(depth):
        inner = sorted(path for path in destination.rglob("*") if path.is_file() and is_archive_name(path))
        if not inner:
            return
        for path in inner:
            archive_bytes = path.stat().st_size
            inner_destination = path.with_name(archive_stem(path))
            logger.info("unpacking %s, found inside %s", path.relative_to(destination), archive.name)
            # the inner archive's own bytes are freed once it is unpacked
            extract(path, inner_destination, max_bytes - unpacked_bytes + archive_bytes)
            path.unlink()
            unpacked_bytes += _size_of(inner_destination) - archive_bytes


def _size_of(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, zlib.error):
        return False


def _extract_tar(archive: Path, staging: Path, max_bytes: int) -> None:
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                # the data filter would strip the leading "/" and extract it anyway: refuse it instead
                if member.name.startswith(("/", "\\")) or PurePosixPath(member.name).parts[:1] == ("..",):
                    raise ArchiveError(f"{archive}: member {member.name!r} refused: an absolute or parent path. "
                                       "Nothing was extracted; the archive may be malicious.")
            declared = sum(member.size for member in members if member.isfile())
            if declared > max_bytes:
                raise ArchiveError(_too_large(archive, declared, max_bytes))
            for member in members:
                try:
                    tar.extract(member, staging, filter="data")
                except tarfile.FilterError as error:
                    raise ArchiveError(f"{archive}: member {member.name!r} refused: {error}. Nothing was "
                                       "extracted; the archive may be malicious.") from None
    except (tarfile.ReadError, EOFError, zlib.error, OSError) as error:
        raise ArchiveError(f"{archive} is truncated or corrupt ({error}): download it again.") from None


def _extract_zip(archive: Path, staging: Path, max_bytes: int) -> None:
    written = 0
    try:
        with zipfile.ZipFile(archive) as zipped:
            entries = zipped.infolist()
            for entry in entries:
                _check_zip_name(archive, entry)
            declared = sum(entry.file_size for entry in entries)
            if declared > max_bytes:
                raise ArchiveError(_too_large(archive, declared, max_bytes))
            for entry in entries:
                target = staging.joinpath(*PurePosixPath(entry.filename.replace("\\", "/")).parts)
                if entry.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                # count what is really written: a zip's declared sizes can lie
                with zipped.open(entry) as source, open(target, "wb") as output:
                    while chunk := source.read(CHUNK_BYTES):
                        written += len(chunk)
                        if written > max_bytes:
                            raise ArchiveError(_too_large(archive, written, max_bytes))
                        output.write(chunk)
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as error:
        raise ArchiveError(f"{archive} is truncated or corrupt ({error}): download it again.") from None


def _check_zip_name(archive: Path, entry: zipfile.ZipInfo) -> None:
    name = entry.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (parts and parts[0].endswith(":")) or ".." in parts:
        raise ArchiveError(f"{archive}: entry {entry.filename!r} points outside the destination: refused. "
                           "Nothing was extracted; the archive may be malicious.")
    if stat.S_ISLNK(entry.external_attr >> 16):
        raise ArchiveError(f"{archive}: entry {entry.filename!r} is a symbolic link: refused.")


def _too_large(archive: Path, size: int, max_bytes: int) -> str:
    return (f"{archive} unpacks to more than {max_bytes / 1e9:.3g} GB ({size / 1e9:.3g} GB or more): refused as "
            "a possible archive bomb. Raise data.max_unpacked_gb if the archive is genuine.")
