"""Verified, resumable downloads over HTTP(S), and local ``file://`` archives.

A download goes to ``<name>.part`` beside its destination. An interrupted transfer is resumed with
an HTTP ``Range`` request from the partial file; a server that answers 200 instead of 206 (it
ignores ranges) gets a clean restart. The checksum is checked before the file is moved into place:
a mismatch deletes the file and says so. Redirects from https to http are refused.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from urllib.parse import unquote, urlparse

from tqdm import tqdm

from imgclf.plumbing.errors import PipelineError
from imgclf.plumbing.files import file_digest

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16
RETRY_DELAY_SECONDS = 1.0  # doubled after each failed attempt


class DownloadError(PipelineError):
    """A download failed for good, or its bytes are not the expected ones."""


class _IncompleteDownloadError(Exception):
    """The connection ended before the whole file arrived: worth another (resumed) attempt."""


@dataclass(frozen=True)
class Checksum:
    algorithm: str  # "md5" or "sha256"
    digest: str

    @classmethod
    def parse(cls, text: str) -> Checksum:
        algorithm, _, digest = text.partition(":")
        return cls(algorithm, digest.lower())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.digest}"


def matches(path: Path, checksum: Checksum | None) -> bool:
    return checksum is None or file_digest(path, checksum.algorithm) == checksum.digest


class _NoDowngradeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, except from https to plain http."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 (urllib's signature)
        if urlparse(req.full_url).scheme == "https" and urlparse(newurl).scheme != "https":
            raise DownloadError(f"{req.full_url} redirects to {newurl}, which is not https: refused. "
                                "Use an https mirror, or download the file yourself and give a file:// URL.")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_NoDowngradeRedirects)


def local_path(url: str) -> Path | None:
    """The path of a ``file://`` URL or a plain path; None for a network URL."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "":
        return Path(url).expanduser()
    return None


def fetch(url: str, destination: Path, checksum: Checksum | None, timeout: float = 60.0,
          retries: int = 3) -> Path:
    """Return a verified local copy of ``url``: a local file as it is, a download at ``destination``.

    An existing ``destination`` whose checksum passes is reused without any network access.
    """
    path = local_path(url)
    if path is not None:
        if not path.is_file():
            raise DownloadError(f"{path} does not exist: check data.url.")
        _verify(path, checksum, url, delete=False)
        return path
    if urlparse(url).scheme not in ("http", "https"):
        raise DownloadError(f"cannot download {url}: use an https://, http:// or file:// URL.")
    if destination.is_file():
        if matches(destination, checksum):
            logger.info("using %s (checksum verified)", destination)
            return destination
        logger.warning("%s does not match %s: downloading it again", destination, checksum)
        destination.unlink()

    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    for attempt in range(retries + 1):
        try:
            _transfer(url, partial, timeout)
            break
        except urllib.error.HTTPError as error:
            if error.code < 500 or attempt == retries:
                raise DownloadError(_http_advice(url, error.code, attempts=attempt + 1)) from None
            reason = f"HTTP {error.code}"
        except (_IncompleteDownloadError, urllib.error.URLError, HTTPException, TimeoutError, ConnectionError) as error:
            if attempt == retries:
                raise DownloadError(
                    f"downloading {url} failed after {retries + 1} attempts ({error}); the partial file "
                    f"{partial} is kept and the next run resumes it. Check the network, raise data.timeout "
                    "or data.retries, or download the file yourself and set data.url to file://<path>.") from None
            reason = str(error)
        delay = RETRY_DELAY_SECONDS * 2**attempt
        logger.warning("download attempt %d of %d failed (%s); retrying in %.0f s",
                       attempt + 1, retries + 1, reason, delay)
        time.sleep(delay)
    _verify(partial, checksum, url, delete=True)
    os.replace(partial, destination)
    return destination


def _transfer(url: str, partial: Path, timeout: float) -> None:
    """One attempt: resume ``partial`` with a Range request, or start it over."""
    offset = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = _opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left to send: the partial file is complete
            return
        raise
    with response:
        if offset and response.status == 206:
            logger.info("resuming %s at %s bytes", url, f"{offset:,}")
        else:
            if offset:
                logger.info("the server ignored the range request: restarting %s", url)
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with open(partial, "ab" if offset else "wb") as output, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=Path(urlparse(url).path).name, disable=None) as progress:
            while chunk := response.read(CHUNK_BYTES):
                output.write(chunk)
                progress.update(len(chunk))
    if total is not None and partial.stat().st_size < total:
        raise _IncompleteDownloadError(f"the connection closed at {partial.stat().st_size:,} of {total:,} bytes")


def _verify(path: Path, checksum: Checksum | None, url: str, delete: bool) -> None:
    if checksum is None:
        return
    actual = file_digest(path, checksum.algorithm)
    if actual != checksum.digest:
        if delete:
            path.unlink()
        raise DownloadError(
            f"{path} from {url} has {checksum.algorithm} {actual}, expected {checksum.digest}"
            f"{'; the file was deleted' if delete else ''}. The source serves other bytes than the official "
            "archive: use another mirror, or set data.checksum if this archive is the one you want.")


def _http_advice(url: str, status: int, attempts: int) -> str:
    advice = {
        401: "the server wants credentials",
        403: "access is refused",
        404: "there is no file at that address: check data.url",
        410: "the file was removed: check data.url",
    }.get(status, "the server failed" if status >= 500 else "the request was refused")
    return (f"downloading {url} failed with HTTP {status} after {attempts} attempt(s): {advice}. "
            "You can also download the file yourself and set data.url to file://<path>.")

