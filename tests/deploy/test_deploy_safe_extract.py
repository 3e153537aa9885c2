"""safe_extract refuses hostile tarballs before writing anything, and extracts good ones."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from deploy.safe_extract import TarballError, normalized_name, safe_extract, validate_members


def member(name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, link: str = "",
           size: int | None = None) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE and size is None else (size or 0)
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, data


def build(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


@pytest.fixture()
def area(tmp_path: Path) -> Path:
    """tmp/area holds the tarball and the destination; tmp itself is 'outside'."""
    (tmp_path / "area").mkdir()
    return tmp_path / "area"


def assert_nothing_written(area: Path, tar_name: str = "t.tar.gz") -> None:
    assert sorted(p.name for p in area.iterdir()) == [tar_name]  # no dest, no staging dir left
    assert sorted(p.name for p in area.parent.iterdir()) == ["area"]  # nothing beside it either


def test_good_tarball_extracts_in_place(area: Path) -> None:
    tar = build(area / "t.tar.gz", [
        member("m", kind=tarfile.DIRTYPE),
        member("m/config.pbtxt", b"name: 'm'"),
        member("./m/1/model.py", b"print(1)"),
    ])
    names = safe_extract(tar, area / "dest")
    assert names == ["m", "m/config.pbtxt", "m/1/model.py"]
    assert (area / "dest" / "m" / "config.pbtxt").read_bytes() == b"name: 'm'"
    assert (area / "dest" / "m" / "1" / "model.py").read_bytes() == b"print(1)"
    assert sorted(p.name for p in area.iterdir()) == ["dest", "t.tar.gz"]


@pytest.mark.parametrize(
    "members, bad_member, reason",
    [
        ([member("m/ok", b"1"), member("../evil", b"x")], "../evil", "path escapes the destination with '..'"),
        ([member("m/../../evil", b"x")], "m/../../evil", "path escapes the destination with '..'"),
        ([member("/abs/evil", b"x")], "/abs/evil", "absolute path"),
        ([member("passwd", kind=tarfile.SYMTYPE, link="/etc/passwd")], "passwd",
         "symbolic link (to '/etc/passwd') is not allowed"),
        ([member("out", kind=tarfile.SYMTYPE, link="../outside"), member("out/evil", b"x")], "out",
         "symbolic link (to '../outside') is not allowed"),
        ([member("m/ok", b"1"), member("hard", kind=tarfile.LNKTYPE, link="m/ok")], "hard",
         "hard link (to 'm/ok') is not allowed"),
        ([member("pipe", kind=tarfile.FIFOTYPE)], "pipe", "fifo members are not allowed"),
        ([member("dev", kind=tarfile.CHRTYPE)], "dev", "character device members are not allowed"),
        ([member("blk", kind=tarfile.BLKTYPE)], "blk", "block device members are not allowed"),
        ([member("a", b"1"), member("a", b"2")], "a", "duplicate member"),
        ([member("f", b"1"), member("f/g", b"2")], "f/g", "path goes through link or file member 'f'"),
    ],
)
def test_hostile_members_are_refused_before_writing(area: Path, members, bad_member: str, reason: str) -> None:
    tar = build(area / "t.tar.gz", members)
    with pytest.raises(TarballError) as info:
        safe_extract(tar, area / "dest")
    assert info.value.member == bad_member
    assert reason in info.value.reason
    assert f"member {bad_member!r}" in str(info.value)
    assert_nothing_written(area)


@pytest.mark.parametrize(
    "members, bad_member, reason",
    [
        ([member("passwd", kind=tarfile.SYMTYPE, link="/etc/passwd")], "passwd",
         "symbolic link target '/etc/passwd' is absolute"),
        ([member("out", kind=tarfile.SYMTYPE, link="../outside")], "out",
         "symbolic link target '../outside' resolves outside the destination"),
        # the link itself is fine lexically, but writing through it is refused
        ([member("d", kind=tarfile.DIRTYPE), member("d/l", kind=tarfile.SYMTYPE, link=".."),
          member("d/l/evil", b"x")], "d/l/evil", "path goes through link or file member 'd/l'"),
        # c -> b/../x looks inside, but b -> . makes it the destination's parent
        ([member("c", kind=tarfile.SYMTYPE, link="b/../x"), member("b", kind=tarfile.SYMTYPE, link=".")],
         "c", "symbolic link target 'b/../x' resolves outside the destination"),
        ([member("loop1", kind=tarfile.SYMTYPE, link="loop2/x"),
          member("loop2", kind=tarfile.SYMTYPE, link="loop1/y")],
         "loop1", "resolves outside the destination"),
        ([member("h", kind=tarfile.LNKTYPE, link="../outside")], "h",
         "hard link target '../outside': path escapes the destination"),
        ([member("h", kind=tarfile.LNKTYPE, link="nothing-here")], "h", "is not an earlier regular file"),
        ([member("d/f", b"1"), member("d", kind=tarfile.SYMTYPE, link="elsewhere")], "d",
         "symbolic link replaces a directory used by earlier members"),
    ],
)
def test_links_must_stay_inside_when_allowed(area: Path, members, bad_member: str, reason: str) -> None:
    tar = build(area / "t.tar.gz", members)
    with pytest.raises(TarballError) as info:
        safe_extract(tar, area / "dest", allow_links=True)
    assert info.value.member == bad_member
    assert reason in info.value.reason
    assert_nothing_written(area)


def test_links_resolving_inside_are_extracted_when_allowed(area: Path) -> None:
    tar = build(area / "t.tar.gz", [
        member("env/lib/python3.10/x.py", b"x = 1"),
        member("env/lib/python3", kind=tarfile.SYMTYPE, link="python3.10"),
        member("env/bin/python", kind=tarfile.SYMTYPE, link="../lib/python3.10/x.py"),
        member("env/copy.py", kind=tarfile.LNKTYPE, link="env/lib/python3.10/x.py"),
    ])
    safe_extract(tar, area / "dest", allow_links=True)
    dest = area / "dest"
    assert (dest / "env/lib/python3").is_symlink()
    assert (dest / "env/lib/python3/x.py").read_bytes() == b"x = 1"
    assert (dest / "env/bin/python").read_bytes() == b"x = 1"
    assert (dest / "env/copy.py").read_bytes() == b"x = 1"


def test_total_size_limit(area: Path) -> None:
    tar = build(area / "t.tar.gz", [member("a", b"x" * 600), member("b", b"y" * 600)])
    with pytest.raises(TarballError) as info:
        safe_extract(tar, area / "dest", max_total_bytes=1000)
    assert info.value.member == "b"
    assert info.value.reason == "total size 1200 bytes exceeds the limit of 1000 bytes"
    assert_nothing_written(area)


def test_huge_declared_member_is_refused_from_its_header(area: Path) -> None:
    # Only a header claiming 1 TiB, no data: refused before anything is read or written.
    info = tarfile.TarInfo("weights.bin")
    info.size = 1 << 40
    (area / "t.tar.gz").write_bytes(gzip.compress(info.tobuf(format=tarfile.PAX_FORMAT)))
    with pytest.raises(TarballError) as err:
        safe_extract(area / "t.tar.gz", area / "dest")
    assert err.value.member == "weights.bin"
    assert f"total size {1 << 40} bytes exceeds the limit of {64 * 1024**3} bytes" == err.value.reason
    assert_nothing_written(area)


def test_member_count_limit(area: Path) -> None:
    tar = build(area / "t.tar.gz", [member(f"f{i}", b"") for i in range(5)])
    with pytest.raises(TarballError, match=r"archive has more than 4 members") as info:
        safe_extract(tar, area / "dest", max_members=4)
    assert info.value.member == "f4"
    assert_nothing_written(area)


def test_unreadable_file_is_a_tarball_error(area: Path) -> None:
    (area / "t.tar.gz").write_bytes(b"this is not a tarball at all" * 20)
    with pytest.raises(TarballError) as info:
        safe_extract(area / "t.tar.gz", area / "dest")
    assert info.value.member is None
    assert "not a readable tar archive" in str(info.value)
    assert_nothing_written(area)


def test_truncated_tarball_is_a_tarball_error(area: Path) -> None:
    good = build(area / "good.tar.gz", [member("a", bytes(range(256)) * 400)])
    (area / "t.tar.gz").write_bytes(good.read_bytes()[:200])
    good.unlink()
    with pytest.raises(TarballError, match="not a readable tar archive"):
        safe_extract(area / "t.tar.gz", area / "dest")
    assert_nothing_written(area)


def test_destination_must_be_absent_or_empty(area: Path) -> None:
    tar = build(area / "t.tar.gz", [member("a", b"1")])
    (area / "dest").mkdir()
    (area / "dest" / "keep").write_text("mine")
    with pytest.raises(FileExistsError):
        safe_extract(tar, area / "dest")
    assert (area / "dest" / "keep").read_text() == "mine"
    (area / "empty").mkdir()
    assert safe_extract(tar, area / "empty") == ["a"]


def test_normalized_name() -> None:
    assert normalized_name("./m//1/./model.py") == "m/1/model.py"
    assert normalized_name("./") == ""
    with pytest.raises(TarballError, match="absolute path"):
        normalized_name("C:/windows")


def test_validate_members_on_open_tarfile(area: Path) -> None:
    tar_path = build(area / "t.tar.gz", [member("m/config.pbtxt", b"x"), member("./", kind=tarfile.DIRTYPE)])
    with tarfile.open(tar_path) as tar:
        assert [m.name for m in validate_members(tar)] == ["m/config.pbtxt"]
