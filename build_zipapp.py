"""Build ``dist/pixi-pack.pyz``: pixi-pack, its dependencies and zstandard's C extension for every
supported interpreter and platform, as one reproducible shiv zipapp.

    python build_zipapp.py [--output dist/pixi-pack.pyz] [--cache build/zipapp-wheels]

Every wheel is pinned below by file name and sha256 and resolved for Python 3.9, the oldest we support,
so the zipapp runs on 3.9-3.14. Pure-Python code goes into the zipapp's one site-packages; each
zstandard build goes into ``_pixi_pack_native/<target>/zstandard`` beside it (see
``pixi_pack/io/_vendor_loader.py``), its ELF files cut down to what the loader maps. Two builds of the same sources are byte-identical:
sorted entries, fixed times (SOURCE_DATE_EPOCH, else shiv's 1980 default), fixed modes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

DateTime = tuple[int, int, int, int, int, int]

ROOT = Path(__file__).resolve().parent
DEFAULT_OUTPUT = ROOT / "dist" / "pixi-pack.pyz"
DEFAULT_CACHE = ROOT / "build" / "zipapp-wheels"
ENTRY_POINT = "pixi_pack.cli:main"
SHEBANG = "/usr/bin/env python3"
NATIVE_DIR = "_pixi_pack_native"  # pixi_pack.io._vendor_loader.NATIVE_DIR
ZSTANDARD_LICENSE = f"{NATIVE_DIR}/LICENSE.zstandard"

# sha256 and file name of every wheel that goes in, as `sha256sum` prints them. The pure-Python ones
# are the newest that support Python 3.9 (`pip download --python-version 3.9`); PyYAML has no pure
# wheel, so its Python files come from one platform wheel and its C extension is left out.
PINS = """
1324c476b4811eff41a8bc2122cd0bbd4d9c7234c725446d99ab1612b3a7fdd2  certifi-2026.10.19.post1-py3-none-any.whl
96e268b0cbda016ac519513294fcd17032264085b600abaac58b93049477e132  charset_normalizer-3.5.3-py3-none-any.whl
ab7ae7122974553370f0bdb919e1a960b2cd1bc1ef0276416d896db81c14582c  idna-3.20-py3-none-any.whl
05d1933f0a5ba7d8d6296bb6d5018e7c94fa473ceb10cf198a92ccea19c27b53  installer-0.7.0-py3-none-any.whl
0150219816b6a1fa26fb4699fb7daa9caf09eb1999f3b70fb6e786805e80375a  pyyaml-6.0.3-cp39-cp39-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl
2462f94637a34fd532264295e186976db0f5d453d1cdd31473c85a6a161affb6  requests-2.32.5-py3-none-any.whl
32a7b79ac57a2e83670ce329ccf675798bc5a2094783a63676866b70503f2e2b  tomli-2.5.0-py3-none-any.whl
bf272323e553dfb2e87d9bfd225ca7b0f467b919d7bbd355436d3fd37cb0acd4  urllib3-2.6.3-py3-none-any.whl
b9af1fe743828123e12b41dd8091eca1074d0c1569cc42e6e1eee98027f2bbd0  zstandard-0.25.0-cp39-cp39-macosx_10_9_x86_64.whl
4b14abacf83dfb5c25eb4e4a79520de9e7e205f72c9ee7702f91233ae57d33a2  zstandard-0.25.0-cp39-cp39-macosx_11_0_arm64.whl
3b870ce5a02d4b22286cf4944c628e0f0881b11b3f14667c1d62185a99e04f53  zstandard-0.25.0-cp39-cp39-manylinux2014_aarch64.manylinux_2_17_aarch64.whl
53e08b2445a6bc241261fea89d065536f00a581f02535f8122eba42db9375530  zstandard-0.25.0-cp39-cp39-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
53f94448fe5b10ee75d246497168e5825135d54325458c4bfffbaafabcc0a577  zstandard-0.25.0-cp39-cp39-musllinux_1_2_aarch64.whl
89c4b48479a43f820b749df49cd7ba2dbc2b1b78560ecb5ab52985574fd40b27  zstandard-0.25.0-cp39-cp39-musllinux_1_2_x86_64.whl
37daddd452c0ffb65da00620afb8e17abd4adaae6ce6310702841760c2c26860  zstandard-0.25.0-cp39-cp39-win_amd64.whl
e59fdc271772f6686e01e1b3b74537259800f57e24280be3f29c8a0deb1904dd  zstandard-0.25.0-cp310-cp310-macosx_10_9_x86_64.whl
4d441506e9b372386a5271c64125f72d5df6d2a8e8a2a45a0ae09b03cb781ef7  zstandard-0.25.0-cp310-cp310-macosx_11_0_arm64.whl
e05ab82ea7753354bb054b92e2f288afb750e6b439ff6ca78af52939ebbc476d  zstandard-0.25.0-cp310-cp310-manylinux2014_aarch64.manylinux_2_17_aarch64.whl
4b6d83057e713ff235a12e73916b6d356e3084fd3d14ced499d84240f3eecee0  zstandard-0.25.0-cp310-cp310-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
3756b3e9da9b83da1796f8809dd57cb024f838b9eeafde28f3cb472012797ac1  zstandard-0.25.0-cp310-cp310-musllinux_1_2_aarch64.whl
75ffc32a569fb049499e63ce68c743155477610532da1eb38e7f24bf7cd29e74  zstandard-0.25.0-cp310-cp310-musllinux_1_2_x86_64.whl
ea9d54cc3d8064260114a0bbf3479fc4a98b21dffc89b3459edd506b69262f6e  zstandard-0.25.0-cp310-cp310-win_amd64.whl
933b65d7680ea337180733cf9e87293cc5500cc0eb3fc8769f4d3c88d724ec5c  zstandard-0.25.0-cp311-cp311-macosx_10_9_x86_64.whl
a3f79487c687b1fc69f19e487cd949bf3aae653d181dfb5fde3bf6d18894706f  zstandard-0.25.0-cp311-cp311-macosx_11_0_arm64.whl
01582723b3ccd6939ab7b3a78622c573799d5d8737b534b86d0e06ac18dbde4a  zstandard-0.25.0-cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64.whl
9300d02ea7c6506f00e627e287e0492a5eb0371ec1670ae852fefffa6164b072  zstandard-0.25.0-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
6c0e5a65158a7946e7a7affa6418878ef97ab66636f13353b8502d7ea03c8097  zstandard-0.25.0-cp311-cp311-musllinux_1_2_aarch64.whl
72d35d7aa0bba323965da807a462b0966c91608ef3a48ba761678cb20ce5d8b7  zstandard-0.25.0-cp311-cp311-musllinux_1_2_x86_64.whl
daab68faadb847063d0c56f361a289c4f268706b598afbf9ad113cbe5c38b6b2  zstandard-0.25.0-cp311-cp311-win_amd64.whl
7b3c3a3ab9daa3eed242d6ecceead93aebbb8f5f84318d82cee643e019c4b73b  zstandard-0.25.0-cp312-cp312-macosx_10_13_x86_64.whl
913cbd31a400febff93b564a23e17c3ed2d56c064006f54efec210d586171c00  zstandard-0.25.0-cp312-cp312-macosx_11_0_arm64.whl
6dffecc361d079bb48d7caef5d673c88c8988d3d33fb74ab95b7ee6da42652ea  zstandard-0.25.0-cp312-cp312-manylinux2014_aarch64.manylinux_2_17_aarch64.whl
5a56ba0db2d244117ed744dfa8f6f5b366e14148e00de44723413b2f3938a902  zstandard-0.25.0-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
1869da9571d5e94a85a5e8d57e4e8807b175c9e4a6294e3b66fa4efb074d90f6  zstandard-0.25.0-cp312-cp312-musllinux_1_2_aarch64.whl
474d2596a2dbc241a556e965fb76002c1ce655445e4e3bf38e5477d413165ffa  zstandard-0.25.0-cp312-cp312-musllinux_1_2_x86_64.whl
ffef5a74088f1e09947aecf91011136665152e0b4b359c42be3373897fb39b01  zstandard-0.25.0-cp312-cp312-win_amd64.whl
ec996f12524f88e151c339688c3897194821d7f03081ab35d31d1e12ec975e94  zstandard-0.25.0-cp313-cp313-macosx_10_13_x86_64.whl
a1a4ae2dec3993a32247995bdfe367fc3266da832d82f8438c8570f989753de1  zstandard-0.25.0-cp313-cp313-macosx_11_0_arm64.whl
bfc4e20784722098822e3eee42b8e576b379ed72cca4a7cb856ae733e62192ea  zstandard-0.25.0-cp313-cp313-manylinux2014_aarch64.manylinux_2_17_aarch64.whl
8e735494da3db08694d26480f1493ad2cf86e99bdd53e8e9771b2752a5c0246a  zstandard-0.25.0-cp313-cp313-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
3c83b0188c852a47cd13ef3bf9209fb0a77fa5374958b8c53aaa699398c6bd7b  zstandard-0.25.0-cp313-cp313-musllinux_1_2_aarch64.whl
4f187a0bb61b35119d1926aee039524d1f93aaf38a9916b8c4b78ac8514a0aaf  zstandard-0.25.0-cp313-cp313-musllinux_1_2_x86_64.whl
1f830a0dac88719af0ae43b8b2d6aef487d437036468ef3c2ea59c51f9d55fd5  zstandard-0.25.0-cp313-cp313-win_amd64.whl
"""


class BuildError(Exception):
    """The zipapp could not be built; the message says why."""


def pinned_wheels() -> dict[str, str]:
    """File name -> sha256 of every pinned wheel."""
    pins = {}
    for line in PINS.strip().splitlines():
        digest, name = line.split()
        pins[name] = digest
    return pins


def wheel_tags(file_name: str) -> tuple[str, str, str]:
    """``requests-2.32.5-py3-none-any.whl`` -> ``("py3", "none", "any")``."""
    python, abi, platform = file_name[: -len(".whl")].split("-")[-3:]
    return python, abi, platform


def native_target(file_name: str) -> str:
    """The ``_pixi_pack_native`` folder of a zstandard wheel: ``cp39-manylinux-x86_64``, ``cp313-win-amd64``."""
    python, _, platform = wheel_tags(file_name)
    tag = platform.split(".")[-1]
    patterns = (
        (r"manylinux_\d+_\d+_(x86_64|aarch64)", "manylinux"),
        (r"musllinux_\d+_\d+_(x86_64|aarch64)", "musllinux"),
        (r"macosx_\d+_\d+_(x86_64|arm64)", "macosx"),
        (r"win_(amd64)", "win"),
    )
    for pattern, system in patterns:
        match = re.fullmatch(pattern, tag)
        if match:
            return f"{python}-{system}-{match.group(1)}"
    msg = f"no native target for {file_name}"
    raise BuildError(msg)


def _pip_platform_args(file_name: str) -> tuple[str, ...]:
    python, abi, platform = wheel_tags(file_name)
    if python.startswith("py"):
        return ("--python-version", "3.9", "--implementation", "py", "--abi", "none", "--platform", "any")
    version = f"{python[2]}.{python[3:]}"
    args = ["--python-version", version, "--implementation", "cp", "--abi", abi]
    for tag in platform.split("."):
        args += ["--platform", tag]
    return tuple(args)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_wheels(pins: Mapping[str, str], cache: Path) -> dict[str, Path]:
    """Every pinned wheel in ``cache``, downloaded with pip (hash-checked) when missing or damaged."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [name for name, digest in pins.items() if not _cached(cache / name, digest)]
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in missing:
        groups.setdefault(_pip_platform_args(name), []).append(name)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in pool.map(lambda item: _pip_download(item[0], item[1], pins, cache), groups.items()):
            pass
    for name, digest in pins.items():
        if not _cached(cache / name, digest):
            msg = f"pip did not download {name} with sha256 {digest} into {cache}"
            raise BuildError(msg)
    return {name: cache / name for name in pins}


def _cached(path: Path, digest: str) -> bool:
    return path.is_file() and _sha256(path) == digest


def _pip_download(
    platform_args: Sequence[str], names: Sequence[str], pins: Mapping[str, str], cache: Path
) -> None:
    lines = []
    for name in names:
        distribution, version = name.split("-")[:2]
        lines.append(f"{distribution}=={version} --hash=sha256:{pins[name]}\n")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as requirements:
        requirements.writelines(lines)
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
        "--only-binary=:all:", "--require-hashes", "--dest", str(cache), "-r", requirements.name,
        *platform_args,
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    finally:
        Path(requirements.name).unlink()
    if result.returncode != 0:
        msg = f"pip download of {', '.join(names)} failed:\n{result.stdout}{result.stderr}"
        raise BuildError(msg)


def strip_elf(data: bytes) -> bytes:
    """A 64-bit ELF shared object cut down to what the dynamic loader maps (other files unchanged).

    Everything after the last byte that a program header covers is debug information, symbol tables and
    section headers, which loading never reads: dropping them takes zstandard's extension from ~11 MB to
    ~1 MB, the same way on every build machine and for every architecture (unlike `strip`, which only
    knows its host's).
    """
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return data
    order = "<" if data[5] == 1 else ">"
    (phoff,) = struct.unpack_from(order + "Q", data, 0x20)
    phentsize, phnum = struct.unpack_from(order + "HH", data, 0x36)
    end = phoff + phentsize * phnum
    for index in range(phnum):
        offset, _, _, filesz = struct.unpack_from(order + "QQQQ", data, phoff + index * phentsize + 8)
        end = max(end, offset + filesz)
    stripped = bytearray(data[:end])
    struct.pack_into(order + "Q", stripped, 0x28, 0)  # e_shoff
    struct.pack_into(order + "HHH", stripped, 0x3A, 0, 0, 0)  # e_shentsize, e_shnum, e_shstrndx
    return bytes(stripped)


def stage(tree: Path, wheels: Mapping[str, Path], source: Path) -> None:
    """Lay out the zipapp's files in ``tree``: ``site-packages/`` (pure wheels, pixi_pack's sources),
    which shiv extracts at start-up, and ``_pixi_pack_native/<target>/zstandard``, which it doesn't."""
    site_packages = tree / "site-packages"
    site_packages.mkdir(parents=True)
    for name, path in sorted(wheels.items()):
        if name.startswith("zstandard-"):
            _stage_zstandard(tree / NATIVE_DIR / native_target(name), path)
        else:
            _install_pure(path, site_packages, tree.parent / "discard")
    with zipfile.ZipFile(wheels[min(n for n in wheels if n.startswith("zstandard-"))]) as wheel:
        license_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE"))
        (tree / ZSTANDARD_LICENSE).write_bytes(wheel.read(license_name))
    for path in sorted((source / "pixi_pack").rglob("*")):
        relative = path.relative_to(source)
        if path.is_file() and _is_source(relative):
            (site_packages / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, site_packages / relative)


def _is_source(relative: Path) -> bool:
    """Python files and ``py.typed``; not caches, nor an editor's hidden temporary files."""
    hidden = any(part.startswith(".") or part == "__pycache__" for part in relative.parts)
    return not hidden and (relative.suffix == ".py" or relative.name == "py.typed")


def _stage_zstandard(target: Path, wheel_path: Path) -> None:
    package = target / "zstandard"
    package.mkdir(parents=True)
    with zipfile.ZipFile(wheel_path) as wheel:
        for name in wheel.namelist():
            base = name.rsplit("/", 1)[-1]
            if name == "zstandard/__init__.py":
                (package / base).write_bytes(wheel.read(name))
            elif name.startswith("zstandard/backend_c."):
                (package / base).write_bytes(strip_elf(wheel.read(name)))


def _install_pure(wheel_path: Path, site_packages: Path, discard: Path) -> None:
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelContentElement, WheelFile

    class PythonOnly(WheelFile):
        """A wheel without its compiled extensions (PyYAML falls back to pure Python without them)."""

        def get_contents(self) -> Iterator[WheelContentElement]:
            for element in super().get_contents():
                if not element[0][0].endswith((".so", ".pyd")):
                    yield element

    schemes = {"purelib": site_packages, "platlib": site_packages}
    schemes.update({key: discard / key for key in ("headers", "scripts", "data")})
    destination = SchemeDictionaryDestination(
        {key: str(value) for key, value in schemes.items()}, interpreter=SHEBANG[2:], script_kind="posix"
    )
    with PythonOnly.open(wheel_path) as wheel:
        install(wheel, destination, additional_metadata={})


def build_epoch() -> int:
    from shiv.constants import SOURCE_DATE_EPOCH_DEFAULT

    return int(os.environ.get("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH_DEFAULT))


def write_zipapp(tree: Path, target: Path, epoch: int) -> None:
    """Write the shiv zipapp of the files in ``tree``, with shiv's bootstrap, deterministically.

    shiv's own ``create_archive`` takes file modes from the disk, lists its bootstrap in directory order
    and puts everything under ``site-packages/``; this writes the same layout with all three fixed.
    """
    import shiv
    import shiv.bootstrap
    from shiv.bootstrap.environment import Environment
    from shiv.builder import MAIN_TEMPLATE
    from shiv.constants import BUILD_AT_TIMESTAMP_FORMAT

    moment = time.gmtime(max(epoch, 315532800))
    date_time = (moment.tm_year, moment.tm_mon, moment.tm_mday, moment.tm_hour, moment.tm_min, moment.tm_sec)
    files = sorted((p.relative_to(tree).as_posix(), p) for p in tree.rglob("*") if p.is_file())
    build_id = hashlib.sha256()
    for relative, path in files:
        build_id.update(path.read_bytes())
        build_id.update(relative.encode())
    environment = Environment(
        built_at=datetime.fromtimestamp(epoch, timezone.utc).strftime(BUILD_AT_TIMESTAMP_FORMAT),
        shiv_version=shiv.__version__,
        build_id=build_id.hexdigest(),
        entry_point=ENTRY_POINT,
        compile_pyc=False,
        reproducible=True,
    )
    bootstrap = Path(shiv.bootstrap.__file__).parent
    with open(target, "wb") as out:
        out.write(f"#!{SHEBANG}\n".encode())
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for relative, path in files:
                _add(archive, relative, path.read_bytes(), date_time)
            for path in sorted(bootstrap.glob("*.py")):
                _add(archive, f"_bootstrap/{path.name}", path.read_bytes(), date_time)
            _add(archive, "environment.json", environment.to_json().encode(), date_time)
            main = MAIN_TEMPLATE.format(module="_bootstrap", fn="bootstrap")
            _add(archive, "__main__.py", _with_version_check(main).encode(), date_time)
    target.chmod(0o755)


VERSION_CHECK = """import sys
if sys.version_info < (3, 9):
    sys.stderr.write(
        "error: pixi-pack needs Python >= 3.9, and %s is Python %d.%d: run it with a newer python\\n"
        % (sys.executable, sys.version_info[0], sys.version_info[1])
    )
    sys.exit(1)
"""
"""Runs before anything else, in syntax any Python reads: the bootstrap and the dependencies would fail
under an old Python with a SyntaxError or a TypeError deep inside urllib3."""


def _with_version_check(main: str) -> str:
    coding, _, rest = main.partition("\n")
    return f"{coding}\n{VERSION_CHECK}{rest}"


def _add(archive: zipfile.ZipFile, name: str, data: bytes, date_time: DateTime) -> None:
    info = zipfile.ZipInfo(name, date_time=date_time)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = 0o100644 << 16
    archive.writestr(info, data)


def build(output: Path = DEFAULT_OUTPUT, cache: Path = DEFAULT_CACHE, source: Path = ROOT) -> str:
    """Build the zipapp at ``output`` (through a temporary name) and return its sha256."""
    wheels = fetch_wheels(pinned_wheels(), cache)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pixi-pack-zipapp-") as work:
        tree = Path(work) / "tree"
        stage(tree, wheels, source)
        partial = output.with_name(f".{output.name}.{os.getpid()}.part")
        try:
            write_zipapp(tree, partial, build_epoch())
            os.replace(partial, output)
        finally:
            partial.unlink(missing_ok=True)
    return _sha256(output)


def write_checksums(paths: Iterable[Path], checksums: Path) -> None:
    """``SHA256SUMS`` in the format ``sha256sum --check`` reads."""
    lines = [f"{_sha256(path)}  {path.name}\n" for path in sorted(paths)]
    checksums.write_text("".join(lines), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="the .pyz to write")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where downloaded wheels are kept")
    args = parser.parse_args(argv)
    try:
        digest = build(args.output, args.cache)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_checksums([args.output], args.output.parent / "SHA256SUMS")
    size = args.output.stat().st_size / 1e6
    print(
        f"built {args.output} ({size:.1f} MB); checksums in {args.output.parent / 'SHA256SUMS'}",
        file=sys.stderr,
    )
    print(f"{digest}  {args.output.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
