"""Reading conda packages safely: layout checks, hostile members, real broken packages.

Whole packages go through :func:`~pixi_pack.install.link.install_packages`, the one path pixi-unpack installs by.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import random
import re
import tarfile
import threading
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import zstandard
from builders import Directory, Symlink, build_package, executable, text_prefix
from conftest import prefix_tree, realdata_path, source_of

from pixi_pack.errors import ArchiveError, PixiPackError
from pixi_pack.formats.package import (
    WHOLE_FILE_LIMIT,
    iter_payload,
    link_stays_inside,
    normalize_member_path,
    read_info,
)
from pixi_pack.install.link import install_packages

PLATFORM = "linux-64"
INDEX = {"name": "evil", "version": "1", "build": "0", "build_number": 0, "depends": [], "subdir": PLATFORM}


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
    paths: Sequence[dict[str, Any]] | None = None, files: Sequence[str] | None = None
) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """``info/index.json``, and ``info/paths.json`` or the old ``info/files`` if given."""
    result = [member("info/index.json", json.dumps(INDEX).encode())]
    if paths is not None:
        result.append(
            member("info/paths.json", json.dumps({"paths": list(paths), "paths_version": 1}).encode())
        )
    if files is not None:
        result.append(member("info/files", "".join(f"{f}\n" for f in files).encode()))
    return result


def write_conda(
    path: Path,
    payload: Sequence[tuple[tarfile.TarInfo, bytes | None]],
    *,
    paths: Sequence[dict[str, Any]] | None = None,
    files: Sequence[str] | None = None,
    names: tuple[str, str] = ("info-evil-1-0.tar.zst", "pkg-evil-1-0.tar.zst"),
) -> Path:
    zstd = zstandard.ZstdCompressor()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", '{"conda_pkg_format_version": 2}')
        archive.writestr(names[0], zstd.compress(tar_bytes(info_members(paths, files))))
        archive.writestr(names[1], zstd.compress(tar_bytes(payload)))
    return path


def write_tar_bz2(
    path: Path,
    members: Sequence[tuple[tarfile.TarInfo, bytes | None]],
    *,
    paths: Sequence[dict[str, Any]] | None = None,
    files: Sequence[str] | None = None,
) -> Path:
    path.write_bytes(bz2.compress(tar_bytes([*info_members(paths, files), *members])))
    return path


def listed(
    members: Sequence[tuple[tarfile.TarInfo, bytes | None]], *, hashed: bool = True
) -> list[dict[str, Any]]:
    """``info/paths.json`` entries for every member with a usable name, so the installer writes it.

    A file's entry has its sha256 and size, as conda-build writes them (``hashed``), or neither: the
    installer takes a different way for each, and both must refuse the same members."""
    entries = []
    for info, data in members:
        try:
            path = normalize_member_path(info.name)
        except ValueError:
            continue
        kind = "softlink" if info.issym() else "directory" if info.isdir() else "hardlink"
        entry: dict[str, Any] = {"_path": path, "path_type": kind}
        if hashed and kind == "hardlink" and data is not None and info.isfile():
            entry.update(sha256=hashlib.sha256(data).hexdigest(), size_in_bytes=len(data))
        entries.append(entry)
    return entries


def install(path: Path, build_dir: Path) -> None:
    """Install the one package at ``path`` into ``build_dir`` as pixi-unpack does."""
    stem = path.name.rsplit(".conda", 1)[0].rsplit(".tar.bz2", 1)[0]
    name, version, build = stem.rsplit("-", 2)
    record = {"name": name, "version": version, "build": build, "subdir": PLATFORM, "depends": []}
    install_packages([source_of(path, record)], build_dir, build_dir, PLATFORM)


def tree(root: Path) -> list[str]:
    """Everything below ``root`` but the installer's own bookkeeping."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.relative_to(root).parts[0] not in ("conda-meta", "CACHEDIR.TAG")
    )


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


def test_normalize_member_path_shortcut_agrees_with_the_full_check() -> None:
    # Names the shortcut accepts as they are must come out unchanged from the full normalisation,
    # which "./" in front forces; names it does not accept take the full path anyway.
    rng = random.Random(7)
    shortcut = 0
    for _ in range(20000):
        name = "".join(rng.choice("ab./\\:\0 ") for _ in range(rng.randrange(0, 9)))
        try:
            expected = normalize_member_path("./" + name)
        except ValueError:
            expected = None
        try:
            got = normalize_member_path(name)
        except ValueError:
            got = None
        if got == name:
            shortcut += 1
            assert expected == name, name
        elif got is not None:
            assert got == expected, name
    assert shortcut > 100


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
def test_install_builder_package(tmp_path: Path, fmt: str) -> None:
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
    install(package.path, out)
    assert json.loads((out / "conda-meta" / "demo-1.0-0.json").read_text())["name"] == "demo"
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
    assert (out / "share" / "demo" / "conf").read_text() == f"prefix={out}\n"


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
    paths = [{"_path": "a", "path_type": "hardlink"}]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("pkg-evil-1-0.tar.zst", zstd.compress(tar_bytes([member("a", b"1")])))
        archive.writestr("metadata.json", "{}")
        archive.writestr("info-evil-1-0.tar.zst", zstd.compress(tar_bytes(info_members(paths))))
    install(path, tmp_path / "out")
    assert (tmp_path / "out" / "a").read_bytes() == b"1"


# --- hostile members ---------------------------------------------------------------------------------

HOSTILE = [
    ("absolute path", [member("/tmp/pwned")], "absolute path"),
    ("parent path", [member("lib/../../pwned")], "outside the package"),
    ("empty symlink", [member("x", None, type=tarfile.SYMTYPE, linkname="")], "empty target"),
    ("device file", [member("dev/sda", None, type=tarfile.BLKTYPE)], "device file"),
    ("char device", [member("dev/null", None, type=tarfile.CHRTYPE)], "device file"),
    ("fifo", [member("fifo", None, type=tarfile.FIFOTYPE)], "FIFO"),
    (
        "hard link to nothing",
        [member("a", None, type=tarfile.LNKTYPE, linkname="missing")],
        "not an earlier file",
    ),
    (
        "hard link to a later file",
        [member("a", None, type=tarfile.LNKTYPE, linkname="b"), member("b")],
        "not an earlier file",
    ),
    (
        "hard link to a symlink",
        [
            member("a", None, type=tarfile.SYMTYPE, linkname="good/first.txt"),
            member("b", None, type=tarfile.LNKTYPE, linkname="a"),
        ],
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
        "it lists lib/x inside lib, which is a symlink",
    ),
    (
        "write through escaping symlink",
        [member("lib", None, type=tarfile.SYMTYPE, linkname="../outside"), member("lib/pwned")],
        "it lists lib/pwned inside lib, which is a symlink",
    ),
    (
        "a file where a folder is listed",
        [member("lib"), member("lib/x")],
        "it lists lib/x inside lib, which is a regular file",
    ),
    ("a file twice", [member("lib/a", b"1"), member("lib/a", b"1")], "it holds lib/a twice"),
    (
        "a file after a hard link of the same path",
        [member("b"), member("a", None, type=tarfile.LNKTYPE, linkname="b"), member("a")],
        "it holds a twice",
    ),
]


@pytest.mark.parametrize("listing", ["paths.json", "paths.json without sha256", "info/files"])
@pytest.mark.parametrize("fmt", ["conda", "tar.bz2"])
@pytest.mark.parametrize(("label", "members", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_member_is_refused_and_nothing_is_left(
    tmp_path: Path,
    fmt: str,
    listing: str,
    label: str,
    members: list[tuple[tarfile.TarInfo, bytes | None]],
    message: str,
) -> None:
    """Every member with a usable name is listed, so the installer would write it if it let it through."""
    payload = [member("good/first.txt", b"fine"), *members]
    entries = listed(payload, hashed=listing == "paths.json")
    paths = entries if listing.startswith("paths.json") else None
    files = [e["_path"] for e in entries] if listing == "info/files" else None
    write = write_conda if fmt == "conda" else write_tar_bz2
    path = write(tmp_path / f"evil-1-0.{fmt}", payload, paths=paths, files=files)
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    with pytest.raises(PixiPackError, match=message) as error:
        install(path, out)
    assert "evil-1-0" in str(error.value)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, "outside"])
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("fmt", ["conda", "tar.bz2"])
@pytest.mark.parametrize(
    ("path", "target"), [("lib/x", "../../etc"), ("x", "/etc/passwd")], ids=["escaping", "absolute"]
)
def test_external_symlink_is_installed_with_a_warning(
    tmp_path: Path, fmt: str, path: str, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As conda and rattler (default ExternalSymlinkPolicy) do; the link is made, never followed."""
    payload = [member("good/first.txt", b"fine"), member(path, None, type=tarfile.SYMTYPE, linkname=target)]
    write = write_conda if fmt == "conda" else write_tar_bz2
    package = write(tmp_path / f"evil-1-0.{fmt}", payload, paths=listed(payload))
    out = tmp_path / "out"
    install(package, out)
    assert (out / path).readlink().as_posix() == target
    assert (out / "good" / "first.txt").read_bytes() == b"fine"
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"evil-1-0: the symlink {path} points outside the environment (-> {target}); installed as it is"
    ]


@pytest.mark.parametrize(
    "links",
    [
        [("x", "../outside/secret")],
        [("y", "../outside/secret"), ("x", "y")],
        [("y", "z"), ("z", "y"), ("x", "y")],
    ],
    ids=["direct", "through another symlink", "loop"],
)
def test_no_link_symlink_leading_outside_is_not_copied(tmp_path: Path, links: list[tuple[str, str]]) -> None:
    """rattler copies the file a ``no_link`` symlink leads to: it must be a file of the package."""
    payload = [member(name, None, type=tarfile.SYMTYPE, linkname=target) for name, target in links]
    paths = [{"_path": "x", "path_type": "softlink", "no_link": True}]
    path = write_conda(tmp_path / "evil-1-0.conda", payload, paths=paths)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("secret")
    out = tmp_path / "out"
    with pytest.raises(ArchiveError, match="the no_link symlink x does not lead to a file of the package"):
        install(path, out)
    assert not out.exists()


def test_existing_destination_is_left_as_it_was(tmp_path: Path) -> None:
    payload = [member("a/b.txt"), member("../c")]
    path = write_conda(tmp_path / "evil-1-0.conda", payload, paths=listed(payload))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArchiveError, match="outside the package"):
        install(path, out)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("hashed", [False, True])
def test_paths_json_symlink_but_regular_file(tmp_path: Path, hashed: bool) -> None:
    paths: list[dict[str, Any]] = [{"_path": "lib/libz.so", "path_type": "softlink"}]
    if hashed:
        paths[0].update(sha256=hashlib.sha256(b"").hexdigest(), size_in_bytes=0)
    path = write_tar_bz2(tmp_path / "evil-1-0.tar.bz2", [member("lib/libz.so", b"")], paths=paths)
    with pytest.raises(
        ArchiveError, match=re.escape("says lib/libz.so is a symlink but the archive holds a regular file")
    ):
        install(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_paths_json_lists_missing_file(tmp_path: Path) -> None:
    paths = [{"_path": "lib/gone", "path_type": "hardlink"}]
    path = write_conda(tmp_path / "evil-1-0.conda", [member("lib/here")], paths=paths)
    with pytest.raises(ArchiveError, match="lists lib/gone but the archive does not hold it"):
        install(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("hashed", [False, True])
def test_member_twice(tmp_path: Path, hashed: bool) -> None:
    payload = [member("lib/a", b"1"), member("lib/a", b"2")]
    path = write_conda(tmp_path / "evil-1-0.conda", payload, paths=listed(payload, hashed=hashed)[:1])
    with pytest.raises(ArchiveError, match="it holds lib/a twice"):
        install(path, tmp_path / "out")
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
        install(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "evil-1-0.conda"
    path.write_bytes(b"this is not a zip file at all")
    with pytest.raises(ArchiveError, match=re.escape("could not read evil-1-0.conda")):
        install(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_truncated_tar_bz2(tmp_path: Path) -> None:
    good = build_package(tmp_path, "demo", fmt="tar.bz2", files={"a": "x" * 10000})
    path = tmp_path / "demo-1.0-0.tar.bz2"
    path.write_bytes(good.path.read_bytes()[:-40])
    with pytest.raises(ArchiveError, match=re.escape("could not read demo-1.0-0.tar.bz2")):
        install(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not _reader_threads()


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pixi-unpack-read"]


def test_tar_bz2_read_ahead_gives_every_byte(tmp_path: Path) -> None:
    # Several MiB: more than the read-ahead thread keeps queued, so it has to wait for the writer.
    big = random.Random(5).randbytes(6 << 20)
    package = build_package(tmp_path, "demo", fmt="tar.bz2", files={"lib/big.bin": big, "lib/small": "s"})
    install(package.path, tmp_path / "out")
    assert (tmp_path / "out" / "lib" / "big.bin").read_bytes() == big
    assert not _reader_threads()


def test_tar_bz2_failing_midway_stops_the_read_ahead_thread(tmp_path: Path) -> None:
    paths = [{"_path": "big.bin", "path_type": "hardlink"}, {"_path": "evil", "path_type": "hardlink"}]
    # The bad member comes first: the thread is still decompressing (or waiting to queue) the rest.
    payload = [member("/etc/evil"), member("big.bin", random.Random(6).randbytes(8 << 20))]
    path = tmp_path / "evil-1-0.tar.bz2"
    path.write_bytes(bz2.compress(tar_bytes(info_members(paths) + payload), 1))
    with pytest.raises(ArchiveError, match="absolute path"):
        install(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not _reader_threads()


def test_missing_index_json(tmp_path: Path) -> None:
    path = tmp_path / "evil-1-0.tar.bz2"
    path.write_bytes(bz2.compress(tar_bytes([member("a")])))
    with pytest.raises(ArchiveError, match=re.escape("info/index.json is missing")):
        install(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "evil-1-0.zip"
    path.write_bytes(b"PK")
    with pytest.raises(ArchiveError, match=re.escape("must end with .conda or .tar.bz2")):
        install(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- real packages -------------------------------------------------------------------------------------

BROKEN = [
    ("ca-certificates-2024.7.4-hbcca054_0.conda", "inside a folder"),
    ("zlib-1.2.11-h7b6447c_3.conda", "symlink lib/libz.so.1 has an empty target"),
    ("zlib-1.2.11-h7b6447c_3.tar.bz2", "says lib/libz.so is a symlink but the archive holds a regular file"),
]


@pytest.mark.parametrize(("name", "message"), BROKEN)
def test_real_broken_packages_are_refused(tmp_path: Path, name: str, message: str) -> None:
    path = realdata_path("packages", "broken", name)
    out = tmp_path / "out"
    with pytest.raises(ArchiveError, match=message) as error:
        install(path, out)
    assert name in str(error.value)
    assert not out.exists()


def test_real_packages_install(tmp_path: Path) -> None:
    """The same package as .conda and .tar.bz2 installs the same files; relative symlinks are kept."""
    folder = realdata_path("packages")
    for name in (
        "mock-2.0.0-py37_1000.conda",
        "mock-2.0.0-py37_1000.tar.bz2",
        "cph_test_data-0.0.1-0.tar.bz2",
    ):
        install(folder / name, tmp_path / name)
    assert (tmp_path / "cph_test_data-0.0.1-0.tar.bz2" / "libexec" / "greetings").readlink() == Path(
        "../bin/hello"
    )
    mock = prefix_tree(tmp_path / "mock-2.0.0-py37_1000.conda")
    assert mock == prefix_tree(tmp_path / "mock-2.0.0-py37_1000.tar.bz2")
    assert "lib/python3.7/site-packages/mock/mock.py" in mock


def test_conda_packages_install_correctly_in_parallel(tmp_path: Path) -> None:
    """Each reader gets its own zstd decompressor: sharing one between threads corrupts data."""

    rng = random.Random(7)
    packages = []
    for i in range(8):
        files = {f"share/p{i}/blob{j}.bin": rng.randbytes(1 << 20) for j in range(4)}
        packages.append((build_package(tmp_path / "pkgs", f"p{i}", "1.0", "0", files=files), files))
    sources = [source_of(package.path, dict(package.record)) for package, _ in packages]

    def install_all(index: int) -> None:
        env = tmp_path / "out" / str(index)
        install_packages(sources, env, env, PLATFORM, workers=8)
        for _, files in packages:
            for rel, data in files.items():
                assert hashlib.sha256((env / rel).read_bytes()).digest() == hashlib.sha256(data).digest()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(install_all, range(4)))


def _paths_data(build_dir: Path) -> dict[str, dict[str, Any]]:
    record = json.loads((build_dir / "conda-meta" / "evil-1-0.json").read_text())
    return {item["_path"]: item for item in record["paths_data"]["paths"]}


@pytest.mark.parametrize("hashed", [False, True])
def test_a_member_not_listed_is_not_installed(tmp_path: Path, hashed: bool) -> None:
    """As rattler: only what info/paths.json lists is written."""
    listed_one, extra = member("lib/a", b"1"), member("lib/extra", b"2")
    path = write_conda(
        tmp_path / "evil-1-0.conda", [listed_one, extra], paths=listed([listed_one], hashed=hashed)
    )
    install(path, tmp_path / "out")
    assert tree(tmp_path / "out") == ["lib", "lib/a"]
    assert list(_paths_data(tmp_path / "out")) == ["lib/a"]


def test_a_file_listed_without_sha256_records_the_written_bytes_hash(tmp_path: Path) -> None:
    payload = [member("lib/a", b"content"), member("lib/b", b"other")]
    paths = listed(payload)
    del paths[0]["sha256"]
    path = write_conda(tmp_path / "evil-1-0.conda", payload, paths=paths)
    install(path, tmp_path / "out")
    items = _paths_data(tmp_path / "out")
    assert "sha256" not in items["lib/a"]
    assert items["lib/a"]["sha256_in_prefix"] == hashlib.sha256(b"content").hexdigest()
    assert items["lib/b"]["sha256"] == hashlib.sha256(b"other").hexdigest()
    assert "sha256_in_prefix" not in items["lib/b"]


def test_a_symlink_listed_as_a_file_is_installed_as_the_symlink(tmp_path: Path) -> None:
    """The archive says what a member is; paths.json's ``hardlink`` for a symlink is kept in conda-meta."""
    target = member("lib/a", b"1")
    link = member("lib/b", None, type=tarfile.SYMTYPE, linkname="a")
    paths = [
        *listed([target]),
        {"_path": "lib/b", "path_type": "hardlink", "sha256": "0" * 64},
    ]
    path = write_conda(tmp_path / "evil-1-0.conda", [target, link], paths=paths)
    install(path, tmp_path / "out")
    assert (tmp_path / "out" / "lib" / "b").is_symlink()
    assert _paths_data(tmp_path / "out")["lib/b"]["path_type"] == "hardlink"


def test_a_file_bigger_than_a_read_is_written_whole(tmp_path: Path) -> None:
    """Past WHOLE_FILE_LIMIT a member is streamed, not read into memory: the file and its record are the same."""
    data = random.Random(3).randbytes(WHOLE_FILE_LIMIT + 12345)
    payload = [member("lib/big", data, size=len(data)), member("lib/small", b"s")]
    for hashed in (True, False):
        out = tmp_path / f"out-{hashed}"
        (tmp_path / f"{hashed}").mkdir()
        path = write_conda(
            tmp_path / f"{hashed}" / "evil-1-0.conda", payload, paths=listed(payload, hashed=hashed)
        )
        install(path, out)
        assert (out / "lib" / "big").read_bytes() == data
        item = _paths_data(out)["lib/big"]
        assert item["size_in_bytes"] == len(data)
        assert item.get("sha256", item.get("sha256_in_prefix")) == hashlib.sha256(data).hexdigest()
