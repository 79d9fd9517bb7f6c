"""The benchmark corpus: a data-science-like linux-64 environment made of real wheels, as conda packages.

Pinned cp311 manylinux wheels (numpy, scipy, pandas, matplotlib and friends) are downloaded once with pip
and repackaged as conda packages with the tests' builders: arch-specific ones with their files under
``lib/python3.11/site-packages`` and console scripts in ``bin/`` (text placeholder in the shebang), pure
ones as ``noarch: python`` with entry points in ``link.json``, as conda-forge builds them. The running
CPython is the ``python`` package (``tests/pythonpkg.py``), and a few small native-library packages with
symlinks, headers and binary placeholders complete it to 25 packages, about 7,500 files and 320 MB.
Formats are mixed, ``.conda`` (zstd level 3) and ``.tar.bz2``.

``build_corpus(big=True)`` adds four 256 MB incompressible packages, so the pack passes 1 GB.

Everything lands under ``benchmarks/.cache/``: ``wheels/`` (pip's downloads, checked against the pins)
and ``corpus/channel`` (the packages and their repodata.json), with ``corpus/manifest.json`` remembering
what was built, so later runs only read it.
"""

from __future__ import annotations

import configparser
import hashlib
import io
import json
import random
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import _testlib  # noqa: F401  (tests/ on sys.path)
from builders import (  # type: ignore[import-not-found,unused-ignore]
    BuiltPackage,
    Directory,
    File,
    FileSpec,
    Symlink,
    binary_prefix,
    build_package,
    executable,
    text_prefix,
    write_channel,
)
from lockfiles import conda, write_lock  # type: ignore[import-not-found,unused-ignore]
from pythonpkg import build_python_package, can_build_python_package, python_version  # type: ignore[import-not-found,unused-ignore]

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
WHEELS = CACHE / "wheels"
CORPUS = CACHE / "corpus"

CORPUS_VERSION = 1
"""Bump when the packages built from the same pins change, so cached corpora are rebuilt."""

PY = "3.11"
SITE_PACKAGES = f"lib/python{PY}/site-packages"
PYTHON_DEPENDS = (f"python >={PY},<{PY}.0a0+", f"python_abi {PY}.* *_cp311")
SYSTEM_LIB_DIRS = (Path("/usr/lib/x86_64-linux-gnu"), Path("/lib/x86_64-linux-gnu"), Path("/usr/lib64"))
BIG_PACKAGES = 4
BIG_FILES = 8
BIG_FILE_SIZE = 32 << 20

Format = Literal["conda", "tar.bz2"]


@dataclass(frozen=True)
class Wheel:
    """A pinned wheel and how it is repackaged."""

    file_name: str
    sha256: str
    fmt: Format = "conda"
    depends: tuple[str, ...] = ()
    """Extra dependencies besides python (the conda names)."""

    @property
    def pure(self) -> bool:
        """Pure-Python wheels become ``noarch: python`` packages."""
        return self.file_name.endswith("-none-any.whl")

    @property
    def requirement(self) -> str:
        name, version = self.file_name.split("-")[:2]
        return f"{name}=={version} --hash=sha256:{self.sha256}"

    @property
    def conda_name(self) -> str:
        return self.file_name.split("-")[0].lower().replace("_", "-")

    @property
    def version(self) -> str:
        return self.file_name.split("-")[1]


MANYLINUX = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
PINNED_WHEELS = (
    Wheel(
        f"numpy-2.1.3-{MANYLINUX}",
        "bc6f24b3d1ecc1eebfbf5d6051faa49af40b03be1aaa781ebdadcbc090b4539b",
    ),
    Wheel(
        f"scipy-1.14.1-{MANYLINUX}",
        "fef8c87f8abfb884dac04e97824b61299880c43f4ce675dd2cbeadd3c9b466d2",
        depends=("numpy >=1.23.5",),
    ),
    Wheel(
        f"pandas-2.2.3-{MANYLINUX}",
        "c124333816c3a9b03fbeef3a9f230ba9a737e9e5bb4060aa2107a86cc0a497fc",
        depends=("numpy >=1.23.2", "python-dateutil >=2.8.2", "pytz >=2020.1", "tzdata >=2022.7"),
    ),
    Wheel(
        f"matplotlib-3.9.2-{MANYLINUX}",
        "8912ef7c2362f7193b5819d17dae8629b34a95c58603d781329712ada83f9447",
        fmt="tar.bz2",
        depends=("contourpy", "cycler", "fonttools", "kiwisolver", "numpy", "pillow", "pyparsing"),
    ),
    Wheel(
        f"pillow-11.0.0-{MANYLINUX}",
        "6f4dba50cfa56f910241eb7f883c20f1e7b1d8f7d91c750cd0b318bad443f4d5",
        depends=("libzlib",),
    ),
    Wheel(
        f"fonttools-4.55.0-{MANYLINUX}",
        "f307f6b5bf9e86891213b293e538d292cd1677e06d9faaa4bf9c086ad5f132f6",
    ),
    Wheel(
        f"kiwisolver-1.4.7-{MANYLINUX}",
        "18077b53dc3bb490e330669a99920c5e6a496889ae8c63b58fbc57c3d7f33a18",
        fmt="tar.bz2",
        depends=("libstdcxx",),
    ),
    Wheel(
        f"contourpy-1.3.1-{MANYLINUX}",
        "3a04ecd68acbd77fa2d39723ceca4c3197cb2969633836ced1bea14e219d077c",
        depends=("numpy >=1.23",),
    ),
    Wheel(
        "cycler-0.12.1-py3-none-any.whl",
        "85cef7cff222d8644161529808465972e51340599459b8ac3ccbac5a854e0d30",
        fmt="tar.bz2",
    ),
    Wheel(
        "pyparsing-3.2.0-py3-none-any.whl",
        "93d9577b88da0bbea8cc8334ee8b918ed014968fd2ec383e868fb8afb1ccef84",
    ),
    Wheel(
        "packaging-24.2-py3-none-any.whl",
        "09abb1bccd265c01f4a3aa3f7a7db064b36514d2cba19a2f694fe6150451a759",
    ),
    Wheel(
        "python_dateutil-2.9.0.post0-py2.py3-none-any.whl",
        "a8b2bc7bffae282281c8140a97d3aa9c14da0b136dfe83f850eea9a5f7470427",
        depends=("six >=1.5",),
    ),
    Wheel(
        "pytz-2024.2-py2.py3-none-any.whl",
        "31c7c1817eb7fae7ca4b8c7ee50c72f93aa2dd863de768e1ef4245d426aa0725",
        fmt="tar.bz2",
    ),
    Wheel(
        "tzdata-2024.2-py2.py3-none-any.whl",
        "a48093786cdcde33cad18c2555e8532f34422074448fbc874186f0abd79565cd",
        fmt="tar.bz2",
    ),
    Wheel(
        "six-1.16.0-py2.py3-none-any.whl",
        "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254",
        fmt="tar.bz2",
    ),
    Wheel(
        "threadpoolctl-3.5.0-py3-none-any.whl",
        "56c1e26c150397e58c4926da8eeee87533b1e32bef131bd4bf6a2f45f3185467",
    ),
)


@dataclass(frozen=True)
class Corpus:
    """The built corpus: one channel folder holding every package, and which ones make up each set."""

    channel: Path
    """A channel laid out by ``write_channel`` (``linux-64/``, ``noarch/``, their repodata.json)."""
    packages: tuple[BuiltPackage, ...]
    """The ~300 MB data-science environment."""
    big: tuple[BuiltPackage, ...]
    """Incompressible extras that, with ``packages``, make a pack of more than 1 GB (empty unless built)."""
    stats: dict[str, dict[str, int]]
    """File name -> ``{"files": n, "bytes": unpacked size}``, from each package's paths.json."""

    def summary(self, packages: Sequence[BuiltPackage]) -> dict[str, int]:
        """Package count, file count, unpacked and archive bytes of ``packages``."""
        return {
            "packages": len(packages),
            "files": sum(self.stats[p.file_name]["files"] for p in packages),
            "unpacked_bytes": sum(self.stats[p.file_name]["bytes"] for p in packages),
            "archive_bytes": sum(p.size for p in packages),
        }


def spec_key(big: bool) -> str:
    """Identifies what ``build_corpus`` would build here; a cached corpus with another key is rebuilt."""
    spec = {
        "version": CORPUS_VERSION,
        "wheels": [asdict(w) for w in PINNED_WHEELS],
        "python": python_version(),
        "big": [BIG_PACKAGES, BIG_FILES, BIG_FILE_SIZE] if big else None,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def build_corpus(*, big: bool, log: Any = print) -> Corpus:
    """The corpus, from the cache when it was built from the same spec, else built now (a minute or so)."""
    manifest_path = CORPUS / "manifest.json"
    cached = load_corpus()
    if cached is not None and (cached.big or not big):
        return cached
    reason = can_build_python_package()
    if reason is not None:
        msg = f"cannot build the corpus's python package: {reason}"
        raise RuntimeError(msg)
    download_wheels(log)
    channel = CORPUS / "channel"
    base: list[BuiltPackage]
    if cached is not None:
        base = list(cached.packages)
        stats = dict(cached.stats)
    else:
        log("building the corpus (once; cached in benchmarks/.cache/corpus)")
        base, stats = _build_base(channel, log)
    extra: list[BuiltPackage] = []
    if big:
        log("building the incompressible packages for the >= 1 GB pack")
        for index in range(BIG_PACKAGES):
            package, package_stats = _big_package(channel, index)
            extra.append(package)
            stats[package.file_name] = package_stats
    write_channel(channel, [*base, *extra])
    manifest = {
        "key": spec_key(big),
        "packages": [_describe(p, "base") for p in base] + [_describe(p, "big") for p in extra],
        "stats": stats,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return Corpus(channel, tuple(base), tuple(extra), stats)


def load_corpus() -> Corpus | None:
    """The cached corpus, or None when there is none or it was built from another spec."""
    manifest_path = CORPUS / "manifest.json"
    if not manifest_path.exists():
        return None
    manifest = json.loads(manifest_path.read_text())
    if manifest["key"] not in (spec_key(False), spec_key(True)):
        return None
    channel = CORPUS / "channel"
    sets: dict[str, list[BuiltPackage]] = {"base": [], "big": []}
    for item in manifest["packages"]:
        path = channel / item["subdir"] / item["file_name"]
        if not path.exists() or path.stat().st_size != item["record"]["size"]:
            return None
        sets[item["set"]].append(
            BuiltPackage(
                path,
                item["file_name"],
                item["subdir"],
                item["name"],
                item["version"],
                item["build"],
                item["record"],
            )
        )
    return Corpus(channel, tuple(sets["base"]), tuple(sets["big"]), manifest["stats"])


def _describe(package: BuiltPackage, which: str) -> dict[str, Any]:
    return {
        "set": which,
        "file_name": package.file_name,
        "subdir": package.subdir,
        "name": package.name,
        "version": package.version,
        "build": package.build,
        "record": package.record,
    }


def download_wheels(log: Any = print) -> None:
    """Fetch the pinned wheels into ``.cache/wheels`` with pip, which checks every sha256."""
    missing = [w for w in PINNED_WHEELS if not _wheel_ok(w)]
    if not missing:
        return
    log(f"downloading {len(missing)} wheels with pip")
    WHEELS.mkdir(parents=True, exist_ok=True)
    requirements = WHEELS / "requirements.txt"
    requirements.write_text("".join(f"{w.requirement}\n" for w in missing))
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--python-version",
        PY,
        "--platform",
        "manylinux2014_x86_64",
        "--platform",
        "manylinux_2_17_x86_64",
        "--require-hashes",
        "-r",
        str(requirements),
        "-d",
        str(WHEELS),
    ]
    subprocess.run(command, check=True)


def _wheel_ok(wheel: Wheel) -> bool:
    path = WHEELS / wheel.file_name
    return path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == wheel.sha256


def _build_base(channel: Path, log: Any) -> tuple[list[BuiltPackage], dict[str, dict[str, int]]]:
    packages: list[BuiltPackage] = []
    stats: dict[str, dict[str, int]] = {}

    def add(package: BuiltPackage, files: dict[str, FileSpec]) -> None:
        packages.append(package)
        stats[package.file_name] = _stats(files)

    python = build_python_package(channel / "linux-64")
    stats[python.file_name] = _stats_of_archive(python)
    packages.append(python)
    for wheel in PINNED_WHEELS:
        log(f"  {wheel.conda_name}")
        package, files = _repackage(wheel, channel)
        add(package, files)
    for name, version, build, fmt, files in _native_packages():
        package = build_package(
            channel / "linux-64", name, version, build, files=files, fmt=fmt, license="BSD-like"
        )
        add(package, files)
    return packages, stats


def _stats(files: dict[str, FileSpec]) -> dict[str, int]:
    size = 0
    count = 0
    for spec in files.values():
        if isinstance(spec, Directory):
            continue
        count += 1
        if isinstance(spec, File):
            size += len(spec.data)
        elif isinstance(spec, (bytes, str)):
            size += len(spec.encode() if isinstance(spec, str) else spec)
    return {"files": count, "bytes": size}


def _stats_of_archive(package: BuiltPackage) -> dict[str, int]:
    """File count and size of a built package, from the ``info/paths.json`` inside it."""
    import io
    import tarfile

    import zstandard

    with zipfile.ZipFile(package.path) as outer:
        info = next(n for n in outer.namelist() if n.startswith("info-"))
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(outer.read(info))).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile("info/paths.json")
        assert member is not None
        paths = json.load(member)["paths"]
    entries = [p for p in paths if p["path_type"] != "directory"]
    return {"files": len(entries), "bytes": sum(p.get("size_in_bytes", 0) for p in entries)}


def _repackage(wheel: Wheel, channel: Path) -> tuple[BuiltPackage, dict[str, FileSpec]]:
    """``wheel`` as a conda package, the way conda-forge's pip-built packages lay their files out."""
    pure = wheel.pure
    site = "site-packages" if pure else SITE_PACKAGES
    scripts = "python-scripts" if pure else "bin"
    files: dict[str, FileSpec] = {}
    with zipfile.ZipFile(WHEELS / wheel.file_name) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            data = archive.read(info)
            mode = (info.external_attr >> 16) & 0o777 or 0o644
            top, _, rest = info.filename.partition("/")
            if top.endswith(".data"):
                kind, _, rel = rest.partition("/")
                if kind == "scripts":
                    files[f"{scripts}/{rel}"] = _script(data, pure)
                    continue
                target = {"purelib": site, "platlib": site, "headers": f"include/python{PY}"}.get(kind)
                path = f"{target}/{rel}" if target else rel
            else:
                path = f"{site}/{info.filename}"
            if ".so" in path.rsplit("/", 1)[-1]:
                mode = 0o755
            files[path] = File(data, mode=mode)
        entry_points = _console_scripts(archive)
    if not pure:
        for command, target in entry_points:
            files[f"bin/{command}"] = _entry_point_script(target)
    depends = (f"python >={PY}",) if pure else PYTHON_DEPENDS
    package = build_package(
        channel / ("noarch" if pure else "linux-64"),
        wheel.conda_name,
        wheel.version,
        "pyhd8ed1ab_0" if pure else "py311h9c5c0b2_0",
        noarch="python" if pure else None,
        files=files,
        depends=[*depends, *wheel.depends],
        entry_points=[f"{command} = {target}" for command, target in entry_points] if pure else (),
        fmt=wheel.fmt,
    )
    return package, files


def _console_scripts(archive: zipfile.ZipFile) -> list[tuple[str, str]]:
    names = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
    if not names:
        return []
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(archive.read(names[0]).decode())
    if not parser.has_section("console_scripts"):
        return []
    return sorted((k, v.strip()) for k, v in parser.items("console_scripts"))


def _script(data: bytes, pure: bool) -> File:
    if pure or not data.startswith(b"#!python"):
        return File(data, mode=0o755)
    return text_prefix(b"#!@PREFIX@/bin/python" + PY.encode() + data[len(b"#!python") :], mode=0o755)


def _entry_point_script(target: str) -> File:
    module, _, func = target.partition(":")
    source = (
        f"#!@PREFIX@/bin/python{PY}\n"
        "# -*- coding: utf-8 -*-\n"
        "import re\n"
        "import sys\n"
        f"from {module} import {func.split('.')[0]}\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        f"    sys.exit({func}())\n"
    )
    return text_prefix(source, mode=0o755)


def _blob(seed: str, size: int) -> bytes:
    """Deterministic bytes that compress about 2.5:1, like shared libraries do."""
    rng = random.Random(seed)
    filler = bytes(range(256)) * 10
    chunks = []
    total = 0
    while total < size:
        chunk = rng.randbytes(1536) + filler
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)[:size]


def _header(name: str, lines: int) -> str:
    body = "".join(
        f"#define {name.upper()}_SYMBOL_{i} {i}\nextern int {name}_function_{i}(void *);\n"
        for i in range(lines)
    )
    return f"/* {name} */\n#ifndef {name.upper()}_H\n#define {name.upper()}_H\n{body}#endif\n"


def _pkgconfig(name: str, version: str) -> File:
    text = (
        "prefix=@PREFIX@\nexec_prefix=${prefix}\nlibdir=${exec_prefix}/lib\nincludedir=${prefix}/include\n\n"
        f"Name: {name}\nDescription: {name} library\nVersion: {version}\nLibs: -L${{libdir}} -l{name}\n"
        "Cflags: -I${includedir}\n"
    )
    return text_prefix(text)


def _shared_library(soname: str, size: int) -> dict[str, FileSpec]:
    """``lib/<soname>`` with its ``.so`` link: this machine's library when it has one, so the environment's
    python can load it (its lib-dynload modules find their libraries in the prefix first), else made-up
    bytes of ``size``."""
    for folder in SYSTEM_LIB_DIRS:
        if (folder / soname).exists():
            real = (folder / soname).resolve()
            name, data = real.name, real.read_bytes()
            break
    else:
        name, data = soname, _blob(soname, size)
    files: dict[str, FileSpec] = {f"lib/{name}": File(data, mode=0o755)}
    for link in sorted({f"{soname.split('.so')[0]}.so", soname} - {name}):
        files[f"lib/{link}"] = Symlink(name)
    return files


def _native_packages() -> Iterable[tuple[str, str, str, Format, dict[str, FileSpec]]]:
    """Small packages like conda-forge's system libraries: symlinks, headers, placeholders."""
    yield "_libgcc_mutex", "0.1", "conda_forge", "tar.bz2", {}
    yield "python_abi", PY, "5_cp311", "conda", {}
    certificates = "".join(
        f"-----BEGIN CERTIFICATE-----\n{_blob(f'cert{i}', 900).hex()}\n-----END CERTIFICATE-----\n"
        for i in range(140)
    )
    yield (
        "ca-certificates",
        "2024.8.30",
        "hbcca054_0",
        "tar.bz2",
        {"ssl/cacert.pem": certificates, "ssl/cert.pem": Symlink("cacert.pem")},
    )
    yield (
        "libzlib",
        "1.3.1",
        "hb9d3cd8_2",
        "conda",
        {
            **_shared_library("libz.so.1", 110_000),
            "include/zlib.h": _header("zlib", 400),
            "include/zconf.h": _header("zconf", 120),
            "lib/pkgconfig/zlib.pc": _pkgconfig("z", "1.3.1"),
        },
    )
    yield (
        "libffi",
        "3.4.2",
        "h7f98852_5",
        "conda",
        {
            **_shared_library("libffi.so.8", 60_000),
            "include/ffi.h": _header("ffi", 300),
            "include/ffitarget.h": _header("ffitarget", 80),
            "lib/pkgconfig/libffi.pc": _pkgconfig("ffi", "3.4.2"),
        },
    )
    openssl: dict[str, FileSpec] = {
        **_shared_library("libcrypto.so.3", 5_000_000),
        **_shared_library("libssl.so.3", 700_000),
        "bin/openssl": binary_prefix(_blob("openssl", 1_000_000) + b"\0@PREFIX@/ssl\0"),
        "lib/ossl-modules/legacy.so": binary_prefix(_blob("legacy", 150_000) + b"\0@PREFIX@/lib/ossl\0"),
        "bin/c_rehash": text_prefix("#!/usr/bin/env perl\nmy $dir = '@PREFIX@/ssl';\n" + "# rehash\n" * 200),
        "ssl/openssl.cnf": text_prefix("HOME = .\ndir = @PREFIX@/ssl\n" + "[ section ]\nkey = value\n" * 300),
        "ssl/misc/CA.pl": executable("#!/usr/bin/env perl\n" + "print 'CA';\n" * 100),
        "lib/pkgconfig/openssl.pc": _pkgconfig("ssl", "3.3.2"),
        "lib/pkgconfig/libcrypto.pc": _pkgconfig("crypto", "3.3.2"),
    }
    for i in range(140):
        openssl[f"include/openssl/header{i:03}.h"] = _header(f"openssl{i}", 60)
    yield "openssl", "3.3.2", "hb9d3cd8_0", "conda", openssl
    yield (
        "libstdcxx",
        "14.2.0",
        "hc0a3c3a_1",
        "conda",
        {
            **_shared_library("libstdc++.so.6", 2_600_000),
            "share/gcc-14.2.0/python/libstdcxx/v6/printers.py": "# pretty printers\n" * 3000,
        },
    )
    yield (
        "libgcc",
        "14.2.0",
        "h77fa898_1",
        "conda",
        {
            **_shared_library("libgcc_s.so.1", 130_000),
            **_shared_library("libgomp.so.1", 300_000),
            **_shared_library("libatomic.so.1", 30_000),
        },
    )


def _big_package(channel: Path, index: int) -> tuple[BuiltPackage, dict[str, int]]:
    """A ``noarch: generic`` package of BIG_FILES incompressible files (random bytes, seeded)."""
    rng = random.Random(f"big{index}")
    files: dict[str, FileSpec] = {
        f"share/bigdata-{index}/blob{i}.bin": File(rng.randbytes(BIG_FILE_SIZE)) for i in range(BIG_FILES)
    }
    package = build_package(channel / "noarch", f"bigdata-{index}", "1.0", "0", noarch="generic", files=files)
    return package, _stats(files)


def write_project(
    folder: Path, packages: Sequence[BuiltPackage], channel_url: str, platform: str = "linux-64"
) -> Path:
    """A pixi project (pixi.toml and pixi.lock, v6) locking ``packages`` from the channel at ``channel_url``.

    Another ``platform`` locks the same packages under that name: the pack is the same bytes, in the form
    of that platform (``win-64``: ``environment.ps1``/``.cmd``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pixi.toml").write_text(
        f'[workspace]\nname = "bench"\nchannels = ["{channel_url}"]\nplatforms = ["{platform}"]\n'
    )
    entries = [conda(p, channel_url) for p in packages]
    write_lock(folder / "pixi.lock", {"default": {platform: entries}}, [channel_url])
    return folder


def reversioned(package: BuiltPackage, version: str) -> BuiltPackage:
    """``package`` (a ``.conda``) under another version: the same files in a new archive beside it, as an
    upgrade that rewrites every file of the package looks to an installer."""
    import zstandard

    old_stem = package.file_name[: -len(".conda")]
    stem = f"{package.name}-{version}-{package.build}"
    path = package.path.with_name(f"{stem}.conda")
    with zipfile.ZipFile(package.path) as source, zipfile.ZipFile(path, "w") as target:
        target.writestr("metadata.json", source.read("metadata.json"))
        info = zstandard.ZstdDecompressor().decompress(
            source.read(f"info-{old_stem}.tar.zst"), max_output_size=1 << 30
        )
        rebuilt = io.BytesIO()
        with tarfile.open(fileobj=io.BytesIO(info)) as old, tarfile.open(fileobj=rebuilt, mode="w") as new:
            for member in old.getmembers():
                extracted = old.extractfile(member) if member.isfile() else None
                data = extracted.read() if extracted is not None else None
                if member.name == "info/index.json" and data is not None:
                    data = json.dumps({**json.loads(data), "version": version}, indent=2).encode()
                    member.size = len(data)
                new.addfile(member, io.BytesIO(data) if data is not None else None)
        target.writestr(
            f"info-{stem}.tar.zst", zstandard.ZstdCompressor(level=3).compress(rebuilt.getvalue())
        )
        target.writestr(f"pkg-{stem}.tar.zst", source.read(f"pkg-{old_stem}.tar.zst"))
    data = path.read_bytes()
    record = {
        **package.record,
        "version": version,
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
        "size": len(data),
    }
    return BuiltPackage(path, path.name, package.subdir, package.name, version, package.build, record)
