"""Hostile and broken archives, built by the tests: refused with the member's name, nothing left."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from imgclf.data.archives import ArchiveError, extract, extract_nested

LIMIT = 1_000_000


def tar_with(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, content in members:
            if content is not None:
                info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def only(folder: Path) -> list[str]:
    """Everything on disk under ``folder``: the tests check nothing escaped or was left."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize(("name", "members"), [
    ("dotdot", [(member("../x"), b"evil")]),
    ("absolute", [(member("/tmp/imgclf-absolute-x"), b"evil")]),
    ("symlink", [(member("link", tarfile.SYMTYPE, "../../outside"), None)]),
    ("hardlink", [(member("inside"), b"ok"), (member("hard", tarfile.LNKTYPE, "../outside"), None)]),
    ("device", [(member("dev", tarfile.CHRTYPE), None)]),
])
def test_unsafe_tar_members_are_refused_by_name(tmp_path, name, members):
    archive = tar_with(tmp_path / f"{name}.tar.gz", (member("good.txt"), b"fine"), *members)
    bad_name = members[-1][0].name
    with pytest.raises(ArchiveError, match=rf"member '{bad_name}' refused"):
        extract(archive, tmp_path / "out", LIMIT)
    assert only(tmp_path) == [f"{name}.tar.gz"]
    assert not Path("/tmp/imgclf-absolute-x").exists()


def test_a_zip_entry_outside_the_destination_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("fine.txt", b"ok")
        zipped.writestr("../x", b"evil")
    with pytest.raises(ArchiveError, match=r"entry '\.\./x' points outside the destination"):
        extract(archive, tmp_path / "out", LIMIT)
    assert only(tmp_path) == ["evil.zip"]


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_an_archive_bomb_over_the_limit_is_refused(tmp_path, kind):
    huge = bytes(LIMIT + 1)  # compresses to a few kB
    if kind == "tar":
        archive = tar_with(tmp_path / "bomb.tar.gz", (member("zeros"), huge))
    else:
        archive = tmp_path / "bomb.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            zipped.writestr("zeros", huge)
    assert archive.stat().st_size < 20_000
    with pytest.raises(ArchiveError, match=r"unpacks to more than .*archive bomb.*data\.max_unpacked_gb"):
        extract(archive, tmp_path / "out", LIMIT)
    assert only(tmp_path) == [archive.name]


def test_a_truncated_tar_gz_fails_cleanly_and_leaves_nothing(tmp_path):
    whole = tar_with(tmp_path / "whole.tar.gz", *[(member(f"f{i}.bin"), bytes([i]) * 50_000) for i in range(5)])
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        extract(cut, tmp_path / "out", LIMIT)
    assert only(tmp_path) == ["cut.tar.gz", "whole.tar.gz"]


def test_not_an_archive_is_an_error(tmp_path):
    (tmp_path / "notes.zip").write_text("hello")
    with pytest.raises(ArchiveError, match="neither a zip nor a tar"):
        extract(tmp_path / "notes.zip", tmp_path / "out", LIMIT)


def test_archives_inside_archives_are_unpacked_in_place(tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zipped:
        zipped.writestr("train/cat.1.jpg", b"jpeg")
    outer = tmp_path / "outer.zip"
    with zipfile.ZipFile(outer, "w") as zipped:
        zipped.writestr("train.zip", inner.getvalue())
        zipped.writestr("readme.txt", b"hi")
    extract_nested(outer, tmp_path / "out", LIMIT)
    assert only(tmp_path / "out") == ["readme.txt", "train", "train/train", "train/train/cat.1.jpg"]
