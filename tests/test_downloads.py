"""Downloads against a real HTTP server on 127.0.0.1 that the tests start and stop."""

from __future__ import annotations

import hashlib
import urllib.request

import pytest

from imgclf.data import downloads
from imgclf.data.downloads import Checksum, DownloadError, fetch
from tests.helpers import FileServer

PAYLOAD = bytes(range(256)) * 4000  # 1 MB, several read chunks
GOOD = Checksum("md5", hashlib.md5(PAYLOAD).hexdigest())


@pytest.fixture(autouse=True)
def no_retry_delay(monkeypatch):
    monkeypatch.setattr(downloads, "RETRY_DELAY_SECONDS", 0.0)


@pytest.fixture
def serve():
    servers: list[FileServer] = []

    def start(**behaviour) -> FileServer:
        servers.append(FileServer(PAYLOAD, **behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def leftovers(folder):
    return sorted(path.name for path in folder.iterdir())


def test_a_download_is_verified_and_moved_into_place(serve, tmp_path):
    server = serve()
    path = fetch(server.url("data.tar.gz"), tmp_path / "data.tar.gz", GOOD, timeout=5, retries=0)
    assert path.read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == ["data.tar.gz"]


def test_a_dropped_connection_is_resumed_from_the_partial_file(serve, tmp_path):
    server = serve(drop_first=True)
    path = fetch(server.url("data.tar.gz"), tmp_path / "data.tar.gz", GOOD, timeout=5, retries=2)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[0] is None
    assert server.requests[1] == f"bytes={len(PAYLOAD) // 2}-"  # resumed, not restarted


def test_a_server_that_ignores_range_gets_a_clean_restart(serve, tmp_path):
    server = serve(drop_first=True, ignore_range=True)
    path = fetch(server.url("data.tar.gz"), tmp_path / "data.tar.gz", GOOD, timeout=5, retries=2)
    assert server.requests[1] is not None  # we asked for the rest...
    assert path.read_bytes() == PAYLOAD  # ...got the whole file again, and kept it once, not appended


def test_a_wrong_checksum_deletes_the_file_and_says_so(serve, tmp_path):
    server = serve()
    wrong = Checksum("md5", "0" * 32)
    with pytest.raises(DownloadError, match=r"has md5 [0-9a-f]{32}, expected 0{32}; the file was deleted"):
        fetch(server.url("data.tar.gz"), tmp_path / "data.tar.gz", wrong, timeout=5, retries=0)
    assert leftovers(tmp_path) == []


def test_404_fails_at_once_with_the_url_and_what_to_try(serve, tmp_path):
    server = serve(status=404)
    url = server.url("missing.tar.gz")
    with pytest.raises(DownloadError, match=rf"{url} failed with HTTP 404 after 1 attempt.*check data\.url"):
        fetch(url, tmp_path / "missing.tar.gz", GOOD, timeout=5, retries=3)
    assert len(server.requests) == 1  # a client error is not retried
    assert leftovers(tmp_path) == []


def test_500_is_retried_a_bounded_number_of_times(serve, tmp_path):
    server = serve(status=500)
    with pytest.raises(DownloadError, match=r"HTTP 500 after 3 attempt\(s\): the server failed.*file://"):
        fetch(server.url("data.tar.gz"), tmp_path / "data.tar.gz", GOOD, timeout=5, retries=2)
    assert len(server.requests) == 3


def test_a_verified_copy_is_reused_without_the_network(tmp_path):
    (tmp_path / "data.tar.gz").write_bytes(PAYLOAD)
    # nothing listens on port 9 of 127.0.0.1: any request would fail
    assert fetch("http://127.0.0.1:9/data.tar.gz", tmp_path / "data.tar.gz", GOOD).read_bytes() == PAYLOAD


def test_a_file_url_is_used_in_place_after_its_checksum(tmp_path):
    local = tmp_path / "mirror" / "data.tar.gz"
    local.parent.mkdir()
    local.write_bytes(PAYLOAD)
    assert fetch(local.as_uri(), tmp_path / "cache" / "data.tar.gz", GOOD) == local
    with pytest.raises(DownloadError, match="expected 0{32}"):
        fetch(local.as_uri(), tmp_path / "cache" / "data.tar.gz", Checksum("md5", "0" * 32))
    assert local.exists()  # a user's own file is never deleted


def test_https_is_never_downgraded_to_http():
    request = urllib.request.Request("https://mirror.example/data.tar.gz")
    with pytest.raises(DownloadError, match="not https: refused"):
        downloads._NoDowngradeRedirects().redirect_request(request, None, 302, "Found", {},
                                                           "http://mirror.example/data.tar.gz")
