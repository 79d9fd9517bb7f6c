"""Reading conda packages safely: layout checks, hostile members, real broken packages."""

from __future__ import annotations

import bz2
import io
import json
import re
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import zstandard
from builders import Directory, Symlink, build_package, executable, text_prefix
from conftest import realdata_path

from pixi_pack.errors import ArchiveError
from pixi_pack.extract import (
    extract_package,
    iter_payload,
    link_stays_inside,
    normalize_member_path,
    read_info,
)

INDEX = {"name": "evil", "version": "1", "build": "0", "build_number": 0, "depends": [], "subdir": "noarch"}


def opener(path: Path) -> Callable[[], BinaryIO]:
    return lambda: path.open("rb")


def tar_bytes(members: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(name: str, data: bytes | None = b"x", **attrs: object) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def info_members(
    paths: Sequence[dict[str, Any]] | None = None,
) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    result = [member("info/index.json", json.dumps(INDEX).encode())]
    if paths is not None:
        result.append(
            member("info/paths.json", json.dumps({"paths": list(paths), "paths_version": 1}).encode())
        )
    return result


def write_conda(
    path: Path,
    payload: Sequence[tuple[tarfile.TarInfo, bytes | None]],
    *,
    paths: Sequence[dict[str, Any]] | None = None,
    names: tuple[str, str] = ("info-evil-1-0.tar.zst", "pkg-evil-1-0.tar.zst"),
) -> Path:
    zstd = zstandard.ZstdCompressor()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", '{"conda_pkg_format_version": 2}')
        archive.writestr(names[0], zstd.compress(tar_bytes(info_members(paths))))
        archive.writestr(names[1], zstd.compress(tar_bytes(payload)))
    return path


def write_tar_bz2(
    path: Path,
    members: Sequence[tuple[tarfile.TarInfo, bytes | None]],
    *,
    paths: Sequence[dict[str, Any]] | None = None,
) -> Path:
    path.write_bytes(bz2.compress(tar_bytes([*info_members(paths), *members])))
    return path


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


# --- pure helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a/b", "a/b"), ("./a//b/", "a/b"), (".", ""), ("a/./b", "a/b"), ("a b/c\u00e9", "a b/c\u00e9")],
)
def test_normalize_member_path(name: str, expected: str) -> None:
    assert normalize_member_path(name) == expected


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../x", "a/../../x", "a/..", "C:/x", "\\x", "a\\..\\b", "a\0b"]
)
def test_normalize_member_path_refuses(name: str) -> None:
    with pytest.raises(ValueError):
        normalize_member_path(name)


@pytest.mark.parametrize(
    ("link", "target", "inside"),
    [
        ("bin/hello", "hello-1.0", True),
        ("libexec/greetings", "../bin/hello", True),
        ("a/b/c", "../../x", True),
        ("a/b", "../../x", False),
        ("a", "/etc/passwd", False),
        ("a", "", False),
        ("a/b", "c/../../../x", False),
    ],
)
def test_link_stays_inside(link: str, target: str, inside: bool) -> None:
    assert link_stays_inside(link, target) is inside


# --- good packages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["conda", "tar.bz2"])
def test_extract_builder_package(tmp_path: Path, fmt: str) -> None:
    package = build_package(
        tmp_path / "build",
        "demo",
        fmt=fmt,  # type: ignore[arg-type]
        files={
            "bin/tool": executable("#!/bin/sh\n"),
            "bin/tool-link": Symlink("tool"),
            "share/demo/conf": text_prefix("prefix=@PREFIX@\n"),
            "share/empty": Directory(),
        },
    )
    out = tmp_path / "out"
    info = extract_package(opener(package.path), package.file_name, out)
    assert json.loads(info.files["index.json"])["name"] == "demo"
    assert tree(out) == [
        "bin",
        "bin/tool",
        "bin/tool-link",
        "share",
        "share/demo",
        "share/demo/conf",
        "share/empty",
    ]
    assert (out / "bin" / "tool").stat().st_mode & 0o777 == 0o755
    assert (out / "bin" / "tool-link").readlink() == Path("tool")


def test_tar_bz2_with_info_last_is_read_whole(tmp_path: Path) -> None:
    payload = [member("lib/a.txt", b"A")]
    data = bz2.compress(
        tar_bytes([*payload, *info_members([{"_path": "lib/a.txt", "path_type": "hardlink"}])])
    )
    path = tmp_path / "evil-1-0.tar.bz2"
    path.write_bytes(data)
    with path.open("rb") as stream:
        info = read_info(stream, path.name)
    assert set(info.files) == {"index.json", "paths.json"}
    with path.open("rb") as stream, iter_payload(stream, path.name) as members:
        assert [m.path for m, _ in members] == ["lib/a.txt"]


def test_conda_member_order_does_not_matter(tmp_path: Path) -> None:
    path = tmp_path / "evil-1-0.conda"
    zstd = zstandard.ZstdCompressor()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("pkg-evil-1-0.tar.zst", zstd.compress(tar_bytes([member("a", b"1")])))
        archive.writestr("metadata.json", "{}")
        archive.writestr("info-evil-1-0.tar.zst", zstd.compress(tar_bytes(info_members())))
    extract_package(opener(path), path.name, tmp_path / "out")
    assert (tmp_path / "out" / "a").read_bytes() == b"1"


# --- hostile members ---------------------------------------------------------------------------------

HOSTILE = [
    ("absolute path", [member("/tmp/pwned")], "absolute path"),
    ("parent path", [member("lib/../../pwned")], "outside the package"),
    (
        "symlink escaping",
        [member("lib/x", None, type=tarfile.SYMTYPE, linkname="../../etc")],
        "points outside",
    ),
    ("absolute symlink", [member("x", None, type=tarfile.SYMTYPE, linkname="/etc/passwd")], "points outside"),
    ("empty symlink", [member("x", None, type=tarfile.SYMTYPE, linkname="")], "empty target"),
    ("device file", [member("dev/sda", None, type=tarfile.BLKTYPE)], "device file"),
    ("char device", [member("dev/null", None, type=tarfile.CHRTYPE)], "device file"),
    ("fifo", [member("fifo", None, type=tarfile.FIFOTYPE)], "FIFO"),
    (
        "hard link to nothing",
        [member("a", None, type=tarfile.LNKTYPE, linkname="missing")],
        "not an earlier file",
    ),
    ("hard link outside", [member("a", None, type=tarfile.LNKTYPE, linkname="../../etc/passwd")], "outside"),
    (
        "write through symlink",
        [
            member("lib", None, type=tarfile.SYMTYPE, linkname="share"),
            member("share/", None, type=tarfile.DIRTYPE),
            member("lib/x"),
        ],
        "something else is already there",
    ),
]


@pytest.mark.parametrize(("fmt"), ["conda", "tar.bz2"])
@pytest.mark.parametrize(("label", "members", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_member_is_refused_and_nothing_is_left(
    tmp_path: Path, fmt: str, label: str, members: list[tuple[tarfile.TarInfo, bytes | None]], message: str
) -> None:
    payload = [member("good/first.txt", b"fine"), *members]
    if fmt == "conda":
        path = write_conda(tmp_path / "evil-1-0.conda", payload)
    else:
        path = write_tar_bz2(tmp_path / "evil-1-0.tar.bz2", payload)
    out = tmp_path / "out"
    with pytest.raises((ArchiveError, OSError), match=message):
        extract_package(opener(path), path.name, out)
    assert not out.exists()
    assert not (tmp_path / "pwned").exists()


def test_existing_destination_is_left_as_it_was(tmp_path: Path) -> None:
    path = write_conda(tmp_path / "evil-1-0.conda", [member("a/b.txt"), member("../c")])
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("mine")
    with pytest.raises(ArchiveError):
        extract_package(opener(path), path.name, out)
    assert tree(out) == ["keep"]


def test_paths_json_symlink_but_regular_file(tmp_path: Path) -> None:
    paths = [{"_path": "lib/libz.so", "path_type": "softlink"}]
    path = write_tar_bz2(tmp_path / "evil-1-0.tar.bz2", [member("lib/libz.so", b"")], paths=paths)
    with pytest.raises(
        ArchiveError, match=re.escape("says lib/libz.so is a symlink but the archive holds a file")
    ):
        extract_package(opener(path), path.name, tmp_path / "out")


def test_paths_json_lists_missing_file(tmp_path: Path) -> None:
    paths = [{"_path": "lib/gone", "path_type": "hardlink"}]
    path = write_conda(tmp_path / "evil-1-0.conda", [member("lib/here")], paths=paths)
    with pytest.raises(ArchiveError, match="lists lib/gone but the archive does not hold it"):
        extract_package(opener(path), path.name, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (("nested/info-evil.tar.zst", "nested/pkg-evil.tar.zst"), "inside a folder"),
        (("info-evil.tar.zst", "other.tar.zst"), "exactly one info"),
    ],
)
def test_malformed_zip_layout(tmp_path: Path, names: tuple[str, str], message: str) -> None:
    path = write_conda(tmp_path / "evil-1-0.conda", [member("a")], names=names)
    with pytest.raises(ArchiveError, match=message):
        extract_package(opener(path), path.name, tmp_path / "out")


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "evil-1-0.conda"
    path.write_bytes(b"this is not a zip file at all")
    with pytest.raises(ArchiveError, match=re.escape("could not read evil-1-0.conda")):
        extract_package(opener(path), path.name, tmp_path / "out")


def test_truncated_tar_bz2(tmp_path: Path) -> None:
    good = build_package(tmp_path, "demo", fmt="tar.bz2", files={"a": "x" * 10000})
    path = tmp_path / "demo-1.0-0.tar.bz2"
    path.write_bytes(good.path.read_bytes()[:-40])
    with pytest.raises(ArchiveError, match="could not read"):
        extract_package(opener(path), path.name, tmp_path / "out")


def test_missing_index_json(tmp_path: Path) -> None:
    path = tmp_path / "evil-1-0.tar.bz2"
    path.write_bytes(bz2.compress(tar_bytes([member("a")])))
    with pytest.raises(ArchiveError, match=re.escape("info/index.json is missing")):
        extract_package(opener(path), path.name, tmp_path / "out")


def test_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match=re.escape("must end with .conda or .tar.bz2")):
        extract_package(opener(tmp_path / "x.zip"), "x.zip", tmp_path / "out")


# --- real packages -------------------------------------------------------------------------------------

BROKEN = [
    ("ca-certificates-2024.7.4-hbcca054_0.conda", "inside a folder"),
    ("zlib-1.2.11-h7b6447c_3.conda", "symlink lib/libz.so.1 has an empty target"),
    ("zlib-1.2.11-h7b6447c_3.tar.bz2", "says lib/libz.so is a symlink but the archive holds a file"),
]


@pytest.mark.parametrize(("name", "message"), BROKEN)
def test_real_broken_packages_are_refused(tmp_path: Path, name: str, message: str) -> None:
    path = realdata_path("packages", "broken", name)
    out = tmp_path / "out"
    with pytest.raises(ArchiveError, match=message) as error:
        extract_package(opener(path), name, out)
    assert name in str(error.value)
    assert not out.exists()


def test_real_packages_extract(tmp_path: Path) -> None:
    folder = realdata_path("packages")
    for path in sorted(folder.glob("*.*")):
        out = tmp_path / path.name
        extract_package(opener(path), path.name, out)
    assert (tmp_path / "cph_test_data-0.0.1-0.tar.bz2" / "libexec" / "greetings").readlink() == Path(
        "../bin/hello"
    )
    mock = tree(tmp_path / "mock-2.0.0-py37_1000.conda")
    assert mock == tree(tmp_path / "mock-2.0.0-py37_1000.tar.bz2")
    assert "lib/python3.7/site-packages/mock/mock.py" in mock


def test_conda_packages_extract_correctly_in_parallel(tmp_path: Path) -> None:
    """Each reader gets its own zstd decompressor: sharing one between threads corrupts data."""
    import hashlib
    import random
    from concurrent.futures import ThreadPoolExecutor

    rng = random.Random(7)
    packages = []
    for i in range(8):
        files = {f"share/p{i}/blob{j}.bin": rng.randbytes(1 << 20) for j in range(4)}
        packages.append((build_package(tmp_path / "pkgs", f"p{i}", "1.0", "0", files=files), files))

    def extract(index: int) -> None:
        package, files = packages[index % len(packages)]
        dest = tmp_path / "out" / str(index)
        extract_package(opener(package.path), package.file_name, dest)
        for rel, data in files.items():
            assert hashlib.sha256((dest / rel).read_bytes()).digest() == hashlib.sha256(data).digest()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(extract, range(32)))
