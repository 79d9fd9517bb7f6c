"""PyPI wheels: selection and packing from pixi.lock, the pip block, hashes, and installation at unpack."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from builders import BuiltPackage, BuiltWheel, build_package, build_wheel, extract_package, write_channel
from conftest import Channel, HttpServer, rattler_solve, realdata_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lockfiles import LockEntry, PypiEntry, conda, lock_text, pypi, write_lock

from pixi_pack.cli import pack_main, unpack_main
from pixi_pack.errors import ArchiveError, InstallError, IntegrityError
from pixi_pack.formats.archive import PackReader
from pixi_pack.formats.channel import environment_yml, metadata_json, parse_pypi_sha256
from pixi_pack.formats.wheel_tags import Target, incompatibility, parse_wheel_name
from pixi_pack.install.wheels import install_wheels, python_layout, verify_wheels
from pixi_pack.lock.lockfile import load_lockfile, select_environment
from pixi_pack.models import PackMetadata
from pixi_pack.platforms import current_subdir

TOOL_SOURCE = 'import sys\n\n\ndef main():\n    print("my-tool says hi from", sys.prefix)\n    return 0\n'


# --- wheel names and tags -------------------------------------------------------------------------


def test_parse_wheel_name() -> None:
    wheel = parse_wheel_name("My_Pkg-1.0.post1-7-py2.py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert wheel is not None
    assert (wheel.name, wheel.version) == ("my-pkg", "1.0.post1")
    assert wheel.python_tags == ("py2", "py3")
    assert wheel.abi_tags == ("none",)
    assert wheel.platform_tags == ("manylinux_2_17_x86_64", "manylinux2014_x86_64")
    for bad in ("foo-1.0.tar.gz", "foo-1.0-py3-none.whl", "foo.whl", "foo-1.0-x-py3-none-any.whl"):
        assert parse_wheel_name(bad) is None, bad


@pytest.mark.parametrize(
    ("file_name", "platform", "python", "problem"),
    [
        ("a-1-py3-none-any.whl", "win-64", (3, 11), None),
        ("a-1-py2.py3-none-any.whl", "linux-64", (3, 11), None),
        ("a-1-py311-none-any.whl", "linux-64", (3, 11), None),
        ("a-1-py37-none-any.whl", "linux-64", (3, 11), None),
        ("a-1-py312-none-any.whl", "linux-64", (3, 11), "built for py312-none"),
        ("a-1-py2-none-any.whl", "linux-64", (3, 11), "built for py2-none"),
        ("a-1-cp311-none-any.whl", "linux-64", (3, 11), None),
        ("a-1-cp310-none-any.whl", "linux-64", (3, 11), "the environment has CPython 3.11"),
        ("a-1-cp311-cp311-manylinux_2_17_x86_64.whl", "linux-64", (3, 11), None),
        ("a-1-cp311-cp311-manylinux2014_x86_64.whl", "linux-64", (3, 11), None),
        ("a-1-cp311-cp311-manylinux1_x86_64.whl", "linux-64", (3, 11), None),
        ("a-1-cp311-cp311-linux_x86_64.whl", "linux-64", (3, 11), None),
        ("a-1-cp311-cp311-musllinux_1_2_x86_64.whl", "linux-64", (3, 11), None),
        ("a-1-cp312-cp312-manylinux_2_17_x86_64.whl", "linux-64", (3, 11), "cp312-cp312, the environment"),
        ("a-1-cp38-abi3-manylinux_2_17_x86_64.whl", "linux-64", (3, 11), None),
        ("a-1-cp312-abi3-manylinux_2_17_x86_64.whl", "linux-64", (3, 11), "cp312-abi3"),
        ("a-1-cp37-cp37m-manylinux1_x86_64.whl", "linux-64", (3, 7), None),
        ("a-1-cp311-cp311-manylinux_2_17_aarch64.whl", "linux-64", (3, 11), "the pack is for linux-64"),
        ("a-1-cp311-cp311-manylinux_2_17_aarch64.whl", "linux-aarch64", (3, 11), None),
        (
            "a-1-cp311-cp311-win_amd64.whl",
            "linux-64",
            (3, 11),
            "built for win_amd64, the pack is for linux-64",
        ),
        ("a-1-cp311-cp311-win_amd64.whl", "win-64", (3, 11), None),
        ("a-1-cp311-cp311-win32.whl", "win-64", (3, 11), "the pack is for win-64"),
        ("a-1-cp311-cp311-macosx_10_9_x86_64.whl", "osx-64", (3, 11), None),
        ("a-1-cp311-cp311-macosx_10_9_universal2.whl", "osx-arm64", (3, 11), None),
        ("a-1-cp311-cp311-macosx_11_0_arm64.whl", "osx-arm64", (3, 11), None),
        ("a-1-cp311-cp311-macosx_11_0_arm64.whl", "osx-64", (3, 11), "the pack is for osx-64"),
        ("a-1-py2.py3-none-manylinux_2_28_x86_64.whl", "linux-64", (3, 12), None),
    ],
)
def test_tag_compatibility(
    file_name: str, platform: str, python: tuple[int, int], problem: str | None
) -> None:
    wheel = parse_wheel_name(file_name)
    assert wheel is not None
    found = incompatibility(wheel, Target(platform, python))
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_host_libc_and_macos_versions_are_checked() -> None:
    many = parse_wheel_name("a-1-cp311-cp311-manylinux_2_28_x86_64.whl")
    musl = parse_wheel_name("a-1-cp311-cp311-musllinux_1_2_x86_64.whl")
    mac = parse_wheel_name("a-1-cp311-cp311-macosx_14_0_arm64.whl")
    assert many is not None and musl is not None and mac is not None
    assert incompatibility(many, Target("linux-64", (3, 11), glibc=(2, 28))) is None
    assert incompatibility(many, Target("linux-64", (3, 11), glibc=(2, 17))) == (
        "it needs glibc >= 2.28, this machine has glibc 2.17"
    )
    assert incompatibility(musl, Target("linux-64", (3, 11), glibc=(2, 36))) == (
        "it is built for musl libc, this machine uses glibc"
    )
    assert incompatibility(mac, Target("osx-arm64", (3, 11), macos=(13, 6))) == (
        "it needs macOS >= 14.0, this machine has 13.6"
    )


def test_python_layout_from_the_conda_record(tmp_path: Path) -> None:
    linux = python_layout([{"name": "python", "version": "3.12.1"}], "linux-64", tmp_path, Path("/opt/env"))
    assert linux.site_packages == "lib/python3.12/site-packages"
    assert (linux.scripts, linux.include, linux.platform) == ("bin", "include/python3.12", "linux-64")
    assert linux.interpreter == "/opt/env/bin/python3.12"
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to("python3.12")
    linux = python_layout([{"name": "python", "version": "3.12.1"}], "linux-64", tmp_path, Path("/opt/env"))
    assert linux.interpreter == "/opt/env/bin/python"
    free = python_layout(
        [
            {
                "name": "python",
                "version": "3.13.0",
                "python_site_packages_path": "lib/python3.13t/site-packages",
            }
        ],
        "linux-64",
        tmp_path,
        Path("/opt/env"),
    )
    assert free.site_packages == "lib/python3.13t/site-packages"
    win = python_layout([{"name": "python", "version": "3.11.9"}], "win-64", tmp_path, Path("/opt/env"))
    assert (win.site_packages, win.scripts, win.prefix) == (
        "Lib/site-packages",
        "Scripts",
        str(Path("/opt/env")),
    )
    assert win.interpreter == str(Path("/opt/env/python.exe"))
    with pytest.raises(InstallError, match="no python conda package"):
        python_layout([{"name": "zlib", "version": "1.3"}], "linux-64", tmp_path, Path("/opt/env"))


# --- install_wheels on a hand-made environment --------------------------------------------------------


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog for the ``pixi_pack`` logger, which the CLI detaches from the root logger."""
    logger = logging.getLogger("pixi_pack")
    logger.addHandler(caplog.handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)


def _tool_wheel(out: Path, version: str = "0.3") -> BuiltWheel:
    """``my-tool``: a package, a console script, a ``#!python`` script and a data file."""
    return build_wheel(
        out,
        "my-tool",
        version,
        modules={
            "my_tool/__init__.py": TOOL_SOURCE,
            f"my_tool-{version}.data/scripts/my-script": "#!python\nimport my_tool\nmy_tool.main()\n",
        },
        console_scripts={"my-tool": "my_tool:main"},
        data_files={"share/my-tool/notes.txt": "notes\n"},
    )


def _folder_pack(
    root: Path,
    wheels: Sequence[BuiltWheel],
    platform: str = "linux-64",
    hashes: Mapping[str, str] | None = None,
) -> PackReader:
    """A pack folder holding just ``pixi-pack.json`` (with wheel hashes) and ``pypi/``."""
    (root / "pypi").mkdir(parents=True)
    for wheel in wheels:
        shutil.copyfile(wheel.path, root / "pypi" / wheel.file_name)
    if hashes is None:
        hashes = {w.file_name: w.sha256 for w in wheels}
    metadata = metadata_json(PackMetadata("1", "test", platform), hashes)
    (root / "pixi-pack.json").write_text(metadata)
    return PackReader(root)


def _fake_env(
    root: Path, version: str = "3.11.7", files: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """A build folder with the python conda record's files listed in conda-meta (no real interpreter)."""
    x_y = ".".join(version.split(".")[:2])
    contents = {f"bin/python{x_y}": "", f"lib/python{x_y}/site-packages/README.txt": "", **(files or {})}
    for path, text in contents.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    record = {"name": "python", "version": version, "build": "h0_0", "files": sorted(contents)}
    (root / "conda-meta").mkdir()
    (root / "conda-meta" / f"python-{version}-h0_0.json").write_text(json.dumps(record))
    return [record]


def _install(tmp_path: Path, wheels: Sequence[BuiltWheel], **kwargs: Any) -> Path:
    build = tmp_path / "build"
    build.mkdir(parents=True)
    records = _fake_env(build, files=kwargs.pop("files", None))
    reader = _folder_pack(tmp_path / "pack", wheels, **kwargs)
    names = [f"pypi/{w.file_name}" for w in wheels]
    # As unpack() does: hashes first, for the whole pack, then the install.
    verify_wheels(reader, names, parse_pypi_sha256(reader.read_text("pixi-pack.json")))
    install_wheels(reader, names, build, tmp_path / "final" / "env", "linux-64", records)
    return build


def _record(build: Path, dist_info: str) -> dict[str, list[str]]:
    rows = (build / "lib/python3.11/site-packages" / dist_info / "RECORD").read_text().splitlines()
    return {row.split(",")[0]: row.split(",")[1:] for row in rows}


def test_installs_files_scripts_data_installer_and_record(tmp_path: Path) -> None:
    wheel = _tool_wheel(tmp_path / "wheels")
    build = _install(tmp_path, [wheel])
    site = build / "lib/python3.11/site-packages"
    assert (site / "my_tool/__init__.py").read_text() == TOOL_SOURCE
    assert (build / "share/my-tool/notes.txt").read_text() == "notes\n"
    script = build / "bin/my-tool"
    assert script.stat().st_mode & 0o111
    first_line = script.read_text().splitlines()[0]
    # The interpreter at the final prefix, not the build folder (short path: a plain shebang).
    assert first_line == f"#!{tmp_path / 'final/env/bin/python3.11'}"
    assert "from my_tool import main" in script.read_text()
    plain_script = build / "bin/my-script"
    assert plain_script.read_text().splitlines()[0] == first_line
    assert plain_script.stat().st_mode & 0o111  # made runnable although the zip says 0644
    assert (site / "my_tool-0.3.dist-info/INSTALLER").read_text() == "pixi-unpack\n"
    record = _record(build, "my_tool-0.3.dist-info")
    assert set(record) == {
        "my_tool/__init__.py",
        "my_tool-0.3.dist-info/METADATA",
        "my_tool-0.3.dist-info/WHEEL",
        "my_tool-0.3.dist-info/entry_points.txt",
        "my_tool-0.3.dist-info/INSTALLER",
        "my_tool-0.3.dist-info/RECORD",
        "../../../bin/my-tool",
        "../../../bin/my-script",
        "../../../share/my-tool/notes.txt",
    }
    digest = hashlib.sha256(TOOL_SOURCE.encode()).digest()
    import base64

    assert (
        record["my_tool/__init__.py"][0] == "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    )
    assert record["my_tool-0.3.dist-info/RECORD"] == ["", ""]


def test_long_prefix_gets_the_sh_trampoline(tmp_path: Path) -> None:
    wheel = _tool_wheel(tmp_path / "wheels")
    build = tmp_path / "build"
    build.mkdir()
    records = _fake_env(build)
    target = tmp_path / ("x" * 130) / "with space"
    reader = _folder_pack(tmp_path / "pack", [wheel])
    install_wheels(reader, [f"pypi/{wheel.file_name}"], build, target, "linux-64", records)
    lines = (build / "bin/my-tool").read_text().splitlines()
    assert lines[0] == "#!/bin/sh"
    assert f"'{target}/bin/python3.11'" in lines[1]


def test_windows_target_gets_launchers_and_lib_site_packages(tmp_path: Path) -> None:
    entry_points = "[console_scripts]\nmy-tool = my_tool:main\n\n[gui_scripts]\nmy-gui = my_tool:main\n"
    wheel = build_wheel(
        tmp_path / "wheels",
        "my-tool",
        "0.3",
        modules={"my_tool/__init__.py": TOOL_SOURCE, "my_tool-0.3.dist-info/entry_points.txt": entry_points},
    )
    build = tmp_path / "build"
    (build / "Lib/site-packages").mkdir(parents=True)
    (build / "python.exe").write_bytes(b"MZ")
    reader = _folder_pack(tmp_path / "pack", [wheel], platform="win-64")
    records = [{"name": "python", "version": "3.11.9"}]
    install_wheels(reader, [f"pypi/{wheel.file_name}"], build, tmp_path / "env", "win-64", records)
    assert (build / "Lib/site-packages/my_tool/__init__.py").is_file()
    console = (build / "Scripts/my-tool.exe").read_bytes()
    gui = (build / "Scripts/my-gui.exe").read_bytes()
    assert console.startswith(b"MZ") and gui.startswith(b"MZ")
    assert f"#!{tmp_path / 'env' / 'python.exe'}\n".encode() in console
    assert f"#!{tmp_path / 'env' / 'pythonw.exe'}\n".encode() in gui
    rows = (build / "Lib/site-packages/my_tool-0.3.dist-info/RECORD").read_text()
    assert "../../Scripts/my-tool.exe," in rows and "../../Scripts/my-gui.exe," in rows


def test_a_wheel_replaces_a_conda_file_with_a_warning(tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    wheel = build_wheel(tmp_path / "wheels", "clash", "1.0", modules={"six.py": "WHEEL = True\n"})
    conda_file = {"lib/python3.11/site-packages/six.py": "CONDA = True\n"}
    build = _install(tmp_path, [wheel], files=conda_file)
    assert (build / "lib/python3.11/site-packages/six.py").read_text() == "WHEEL = True\n"
    assert "six.py" in _record(build, "clash-1.0.dist-info")
    message = "wheel clash-1.0-py3-none-any.whl replaces lib/python3.11/site-packages/six.py"
    assert f"{message} from conda package python-3.11.7-h0_0" in logs.messages


def test_hashes_are_verified(tmp_path: Path) -> None:
    wheel = _tool_wheel(tmp_path / "wheels")
    with pytest.raises(IntegrityError, match=rf"pypi/{wheel.file_name} in the pack: sha256 mismatch"):
        _install(tmp_path / "a", [wheel], hashes={wheel.file_name: "0" * 64})
    with pytest.raises(
        ArchiveError, match=r"incomplete: pypi/other-1.0-py3-none-any.whl is listed in pixi-pack"
    ):
        _install(
            tmp_path / "b",
            [wheel],
            hashes={wheel.file_name: wheel.sha256, "other-1.0-py3-none-any.whl": "0" * 64},
        )
    other = build_wheel(tmp_path / "wheels", "other", "1.0")
    with pytest.raises(
        ArchiveError, match=rf"inconsistent: pypi/{other.file_name} has no sha256 in pixi-pack"
    ):
        _install(tmp_path / "c", [wheel, other], hashes={wheel.file_name: wheel.sha256})


def test_packs_without_hashes_install_with_a_warning(tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    wheel = _tool_wheel(tmp_path / "wheels")
    build = _install(tmp_path, [wheel], hashes={})
    assert (build / "bin/my-tool").is_file()
    assert any("records no wheel hashes" in m for m in logs.messages)


def test_incompatible_wheel_is_refused_before_anything_is_installed(tmp_path: Path) -> None:
    good = _tool_wheel(tmp_path / "wheels")
    bad = build_wheel(tmp_path / "wheels", "fast", "2.0", tag="cp311-cp311-win_amd64")
    with pytest.raises(InstallError) as info:
        _install(tmp_path, [good, bad])
    assert str(info.value) == (
        "wheel fast-2.0-cp311-cp311-win_amd64.whl cannot be installed: "
        "it is built for win_amd64, the pack is for linux-64"
    )
    assert not (tmp_path / "build/bin/my-tool").exists()
    old = build_wheel(tmp_path / "wheels", "old", "1.0", tag="cp310-cp310-linux_x86_64")
    with pytest.raises(InstallError, match=r"it is built for cp310-cp310, the environment has CPython 3\.11"):
        _install(tmp_path / "again", [old])


def test_a_broken_wheel_is_a_clear_error(tmp_path: Path) -> None:
    wheel = _tool_wheel(tmp_path / "wheels")
    broken = tmp_path / "broken" / "broken-1.0-py3-none-any.whl"
    broken.parent.mkdir()
    broken.write_bytes(b"not a zip")
    fake = BuiltWheel(broken, broken.name, "broken", "1.0", hashlib.sha256(b"not a zip").hexdigest())
    with pytest.raises(InstallError, match=r"could not install wheel broken-1\.0-py3-none-any\.whl: .*zip"):
        _install(tmp_path, [wheel, fake])


def test_a_wheel_cannot_write_outside_the_environment(tmp_path: Path) -> None:
    evil = build_wheel(tmp_path / "wheels", "evil", "1.0", modules={"../../../../escape.py": "x = 1\n"})
    with pytest.raises(InstallError, match="would be written outside the environment"):
        _install(tmp_path, [evil])
    assert not list(tmp_path.rglob("escape.py"))


def _altered(wheel: BuiltWheel, members: Mapping[str, bytes | None]) -> BuiltWheel:
    """``wheel`` with members replaced, added (a new name) or dropped (None); RECORD left as it was."""
    with zipfile.ZipFile(wheel.path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    for name, data in members.items():
        if data is None:
            del contents[name]
        else:
            contents[name] = data
    path = wheel.path.parent / "altered" / wheel.file_name
    path.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return BuiltWheel(path, wheel.file_name, wheel.name, wheel.version, digest)


_INIT = "my_tool/__init__.py"
_RECORD = "my_tool-0.3.dist-info/RECORD"


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (
            {_INIT: TOOL_SOURCE.replace("def", "fed").encode()},
            rf"{_INIT} does not match RECORD \({len(TOOL_SOURCE)} bytes, RECORD says {len(TOOL_SOURCE)} and sha256=",
        ),
        ({_INIT: b"x"}, rf"{_INIT} does not match RECORD \(1 bytes, RECORD says {len(TOOL_SOURCE)}"),
        ({"my_tool/extra.py": b"import os\n"}, "my_tool/extra.py is not mentioned in RECORD"),
        ({_RECORD: f"{_INIT},,\n{_RECORD},,\n".encode()}, "is not included in RECORD"),
        ({_RECORD: None}, "Unable to retrieve `RECORD`"),
    ],
    ids=["altered", "resized", "unlisted", "no hash", "no RECORD"],
)
def test_a_wheel_that_contradicts_its_record_is_refused(
    tmp_path: Path, members: Mapping[str, bytes | None], message: str
) -> None:
    """What installer's validate_record refuses; pip installs these, pixi-unpack does not."""
    wheel = _altered(_tool_wheel(tmp_path / "wheels"), members)
    with pytest.raises(InstallError, match=message) as info:
        _install(tmp_path, [wheel])
    assert "my_tool-0.3-py3-none-any.whl" in str(info.value)


@pytest.mark.parametrize(
    "record",
    [
        b"\xff\xfe not utf-8\n",
        f"{_INIT}\n".encode(),
        f"{_INIT},sha256=abc,big\n".encode(),
        f"{_INIT},nohash,1\n".encode(),
        f"{_INIT},sha256=,1,extra\n".encode(),
        b'"unterminated,\n',
        b"\0" * 100,
    ],
    ids=[
        "non-UTF-8",
        "one column",
        "size not a number",
        "hash without =",
        "four columns",
        "bad quote",
        "NUL",
    ],
)
def test_a_malformed_record_is_our_error(tmp_path: Path, record: bytes) -> None:
    wheel = _altered(_tool_wheel(tmp_path / "wheels"), {_RECORD: record})
    with pytest.raises(InstallError, match=re.escape("my_tool-0.3-py3-none-any.whl")):
        _install(tmp_path, [wheel])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_fuzz_record_allows_only_our_error(tmp_path: Path, record: bytes) -> None:
    case = Path(tempfile.mkdtemp(dir=tmp_path))
    wheel = _altered(_tool_wheel(case / "wheels"), {_RECORD: record})
    with pytest.raises(InstallError):
        _install(case, [wheel])


# --- a real interpreter -----------------------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}


def test_installed_wheel_runs_with_the_environment_python(
    tmp_path: Path, python_package: BuiltPackage
) -> None:
    """The real CPython package extracted as is (no prefix rewriting needed to import and run)."""
    env = tmp_path / "env"
    extract_package(python_package.path, env)
    shutil.rmtree(env / "info")
    wheel = _tool_wheel(tmp_path / "wheels")
    reader = _folder_pack(tmp_path / "pack", [wheel])
    install_wheels(reader, [f"pypi/{wheel.file_name}"], env, env, "linux-64", [python_package.record])
    python = env / "bin" / "python"
    code = "import my_tool, importlib.metadata as m; print(my_tool.__file__); print(m.version('my-tool'))"
    out = subprocess.run([python, "-c", code], env=_clean_env(), capture_output=True, text=True, check=True)
    site = env / f"lib/python{'.'.join(python_package.version.split('.')[:2])}/site-packages"
    assert out.stdout.splitlines() == [str(site / "my_tool/__init__.py"), "0.3"]
    run = subprocess.run([env / "bin/my-tool"], env=_clean_env(), capture_output=True, text=True, check=True)
    assert run.stdout == f"my-tool says hi from {env}\n"


# --- pack: lockfile entries -> pypi/, pixi-pack.json, environment.yml --------------------------------


def _served_wheels(server: HttpServer) -> dict[str, BuiltWheel]:
    """Wheels under ``<server>/wheels``: a tool with a console script and data, and one with ``+`` in its name."""
    folder = server.root / "wheels"
    return {
        "tool": _tool_wheel(folder),
        "local": build_wheel(folder, "Local_Version", "1.0+cpu"),
        "plain": build_wheel(folder, "plain", "2.1"),
        "rel": build_wheel(server.root / "project" / "dist", "rel-pkg", "0.1"),
        "file": build_wheel(server.root / "elsewhere", "file-pkg", "0.2"),
    }


def _pack_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


@pytest.mark.parametrize("version", [4, 5, 6, 7])
def test_pack_collects_wheels_from_every_location_kind(
    tmp_path: Path, http_server: HttpServer, served_channel: str, channel: Channel, version: int
) -> None:
    wheels = _served_wheels(http_server)
    project = http_server.root / "project"
    encoded = wheels["local"].file_name.replace("+", "%2B")
    entries: list[LockEntry] = [
        *(conda(p, served_channel) for p in channel.packages.values()),
        pypi(wheels["tool"], http_server.url_for(wheels["tool"].path)),
        pypi(wheels["local"], f"{http_server.url}/wheels/{encoded}"),
        pypi(wheels["plain"], "direct+" + http_server.url_for(wheels["plain"].path), with_hash=False),
        pypi(wheels["rel"], f"dist/{wheels['rel'].file_name}", with_hash=False),
        pypi(wheels["file"], wheels["file"].path.as_uri(), with_hash=False),
    ]
    write_lock(project / "pixi.lock", {"default": {"linux-64": entries}}, [served_channel], version=version)
    out = tmp_path / "environment.tar"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out)]) == 0
    members = _pack_members(out)
    expected = {w.file_name: w.sha256 for w in wheels.values()}
    assert sorted(n for n in members if n.startswith("pypi/")) == sorted(f"pypi/{n}" for n in expected)
    assert "pypi/Local_Version-1.0+cpu-py3-none-any.whl" in members  # percent-decoded
    for file_name, sha256 in expected.items():
        assert hashlib.sha256(members[f"pypi/{file_name}"]).hexdigest() == sha256
    assert json.loads(members["pixi-pack.json"])["pypi-sha256"] == expected
    again = tmp_path / "again.tar"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()
    pip_block = members["environment.yml"].decode().split("  - pip:\n")[1]
    assert pip_block == (
        "    - --no-index\n"
        "    - --find-links ./pypi\n"
        "    - my-tool==0.3\n"
        "    - local-version==1.0+cpu\n"
        "    - plain==2.1\n"
        "    - rel-pkg==0.1\n"
        "    - file-pkg==0.2\n"
    )


def test_wheel_hash_mismatch_fails_the_pack(
    tmp_path: Path, http_server: HttpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    wheel = build_wheel(http_server.root / "wheels", "plain", "2.1")
    entry = PypiEntry(http_server.url_for(wheel.path), wheel.name, wheel.version, "ab" * 32)
    project = tmp_path / "project"
    write_lock(project / "pixi.lock", {"default": {"linux-64": [entry]}}, [])
    out = tmp_path / "environment.tar"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"plain 2.1 from {http_server.url_for(wheel.path)}: sha256 mismatch (expected {'ab' * 32}" in err
    assert not out.exists()


def _non_wheel_lock(path: Path, wheel: BuiltWheel, wheel_url: str, version: int) -> None:
    """A lockfile with a wheel, an sdist, two git URLs and an editable source tree (``path:`` in v4)."""
    text = lock_text({"default": {"linux-64": [pypi(wheel, wheel_url)]}}, [], version=version)
    data = yaml.safe_load(text)
    refs = data["environments"]["default"]["packages"]["linux-64"]
    sources = {
        "sdist-pkg": "https://x.invalid/sdist_pkg-1.0.tar.gz",
        "git-pkg": "git+https://github.com/psf/requests.git@0106aced5faa299e6ede89d1230bd6784f2c3660",
        "ssh-pkg": "git+ssh://git@github.com/pallets/flask@b90a4f1f4a370e92054b9cc9db0efcb864f87ebe",
        "editable-pkg": "./projects/editable-pkg",
    }
    for name, location in sources.items():
        refs.append({"pypi": location})
        if version >= 6:
            record: dict[str, Any] = {"pypi": location, "name": name, "version": "1.0"}
        else:
            key = "path" if location.startswith("./") else "url"
            record = {"kind": "pypi", "name": name, "version": "1.0", key: location}
        if name == "editable-pkg":
            record["editable"] = True
        data["packages"].append(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize("version", [4, 6])
def test_non_wheel_entries_fail_unless_ignored(
    tmp_path: Path, http_server: HttpServer, capsys: pytest.CaptureFixture[str], version: int
) -> None:
    wheel = build_wheel(http_server.root / "wheels", "plain", "2.1")
    project = tmp_path / "project"
    _non_wheel_lock(project / "pixi.lock", wheel, http_server.url_for(wheel.path), version)
    (project / "projects" / "editable-pkg").mkdir(parents=True)
    out = tmp_path / "environment.tar"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert (
        "error: package sdist-pkg is not a wheel file, we currently require all dependencies to be wheels."
        in err
    )
    assert not out.exists()
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out), "--ignore-pypi-non-wheel"]) == 0
    err = capsys.readouterr().err
    for name in ("sdist-pkg", "git-pkg", "ssh-pkg", "editable-pkg"):
        assert f"warning: skipping {name}: not a wheel" in err
    members = _pack_members(out)
    assert [n for n in members if n.startswith("pypi/")] == [f"pypi/{wheel.file_name}"]
    assert members["environment.yml"].decode().endswith("    - plain==2.1\n")


def test_injected_wheels_are_named_from_their_file_names(
    tmp_path: Path, served_channel: str, channel: Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    write_lock(
        project / "pixi.lock",
        {"default": {"linux-64": [conda(p, served_channel) for p in channel.packages.values()]}},
        [served_channel],
    )
    first = build_wheel(tmp_path / "inject", "My_Webserver", "0.1.0")
    second = build_wheel(tmp_path / "inject", "other.pkg", "2.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    out = tmp_path / "environment.tar"
    args = [
        str(project),
        "-p",
        "linux-64",
        "-o",
        str(out),
        "--inject",
        str(first.path),
        "--inject",
        str(second.path),
    ]
    assert pack_main(args) == 0
    err = capsys.readouterr().err
    assert f"warning: injected wheel {first.file_name} cannot be checked against the environment" in err
    assert "no pip conda package" in err
    members = _pack_members(out)
    assert {f"pypi/{first.file_name}", f"pypi/{second.file_name}"} <= set(members)
    env = yaml.safe_load(members["environment.yml"])
    assert env["dependencies"][-1] == {
        "pip": ["--no-index", "--find-links ./pypi", "my-webserver==0.1.0", "other-pkg==2.0"]
    }
    hashes = json.loads(members["pixi-pack.json"])["pypi-sha256"]
    assert hashes == {first.file_name: first.sha256, second.file_name: second.sha256}
    clash = build_wheel(tmp_path / "clash", "my-webserver", "0.2.0")
    args = [str(project), "-p", "linux-64", "-o", str(out), "-i", str(first.path), "-i", str(clash.path)]
    assert pack_main(args) == 1
    assert "my-webserver 0.1.0 is already in the pack from another injected wheel" in capsys.readouterr().err
    bogus = tmp_path / "not-a-wheel.whl"
    bogus.write_bytes(b"")
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out), "--inject", str(bogus)]) == 1
    assert "not a valid wheel file name" in capsys.readouterr().err


def test_injected_wheels_are_checked_against_the_locked_python(
    tmp_path: Path, http_server: HttpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    python = build_package(tmp_path / "build", "python", "3.11.7", "h0_0", files={"bin/python3.11": ""})
    write_channel(http_server.root / "channel", [python])
    channel_url = http_server.url_for("channel")
    project = tmp_path / "project"
    write_lock(project / "pixi.lock", {"default": {"linux-64": [conda(python, channel_url)]}}, [channel_url])
    out = tmp_path / "environment.tar"
    for tag, problem in [
        (
            "cp312-cp312-manylinux_2_17_x86_64",
            "it is built for cp312-cp312, the environment has CPython 3.11",
        ),
        ("cp311-cp311-win_amd64", "it is built for win_amd64, the pack is for linux-64"),
    ]:
        wheel = build_wheel(tmp_path / "inject", "fast", "1.0", tag=tag)
        assert pack_main([str(project), "-p", "linux-64", "-o", str(out), "--inject", str(wheel.path)]) == 1
        assert f"error: cannot inject {wheel.file_name}: {problem}" in capsys.readouterr().err
        assert not out.exists()
    fits = build_wheel(tmp_path / "inject", "fast", "1.0", tag="cp311-abi3-manylinux_2_17_x86_64")
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out), "--inject", str(fits.path)]) == 0


# --- compatibility mode and real lockfiles ------------------------------------------------------------


def test_environment_yml_solves_against_the_pack_channel(tmp_path: Path, http_server: HttpServer) -> None:
    rattler = pytest.importorskip("rattler")
    build = tmp_path / "build"
    python = build_package(build, "python", "3.11.7", "h0_0", files={"bin/python3.11": ""})
    pip = build_package(build, "pip", "24.0", "pyhd8ed1ab_0", noarch="python", depends=["python >=3.7"])
    write_channel(http_server.root / "channel", [python, pip])
    channel_url = http_server.url_for("channel")
    wheel = _tool_wheel(http_server.root / "wheels")
    project = tmp_path / "project"
    entries: list[LockEntry] = [
        conda(python, channel_url),
        conda(pip, channel_url),
        pypi(wheel, http_server.url_for(wheel.path)),
    ]
    write_lock(project / "pixi.lock", {"default": {"linux-64": entries}}, [channel_url])
    out = tmp_path / "pack"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out), "--directory-only"]) == 0
    env = yaml.safe_load((out / "environment.yml").read_text())
    assert env["channels"] == ["./channel", "nodefaults"]
    *specs, pip_block = env["dependencies"]
    assert specs == ["python=3.11.7=h0_0", "pip=24.0=pyhd8ed1ab_0"]
    assert pip_block == {"pip": ["--no-index", "--find-links ./pypi", "my-tool==0.3"]}
    assert (out / "pypi" / wheel.file_name).is_file()
    # conda's `name=version=build` form; rattler reads it leniently, as conda and micromamba do.
    strict_specs = [str(rattler.MatchSpec(spec, strict=False)) for spec in specs]
    solved = rattler_solve((out / "channel").as_uri(), strict_specs, tmp_path / "cache")
    assert sorted(r.file_name for r in solved) == sorted([python.file_name, pip.file_name])


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        (
            "linux-64",
            [
                ("numpy", "1.26.4", None),
                ("ordered-enum", "0.0.9", "9382e88309b56dcbe06be43c4a586984d036b630863b53dbec5039655bab3e83"),
                ("my-webserver", "0.1.0", None),
            ],
        ),
        (
            "linux-aarch64",
            [("ordered-enum", "0.0.9", "9382e88309b56dcbe06be43c4a586984d036b630863b53dbec5039655bab3e83")],
        ),
    ],
)
def test_realdata_lock_selects_its_wheels(platform: str, expected: list[tuple[str, str, str | None]]) -> None:
    path = realdata_path("locks", "pixipack-pypi-wheel-packages.v6.lock")
    env = select_environment(load_lockfile(path), "default", platform, path.parent)
    wheels = [w for w in env.pypi_packages if w.is_wheel]
    assert wheels == list(env.pypi_packages)
    assert sorted((w.name, w.version, w.sha256) for w in wheels) == sorted(expected)
    by_name = {w.name: w for w in wheels}
    if platform == "linux-64":
        numpy = by_name["numpy"]
        assert numpy.location.startswith("https://files.pythonhosted.org/")  # direct+ dropped
        assert numpy.file_name == "numpy-1.26.4-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
        local = Path(by_name["my-webserver"].location)
        assert local == (path.parent / "../webserver/my_webserver-0.1.0-py3-none-any.whl").resolve()
        parsed = parse_wheel_name(numpy.file_name)
        assert parsed is not None
        assert incompatibility(parsed, Target("linux-64", (3, 12))) is None
        assert incompatibility(parsed, Target("linux-aarch64", (3, 12))) is not None
    pip_lines = environment_yml([], wheels).split("  - pip:\n")[1].splitlines()[2:]
    assert pip_lines == [f"    - {name}=={version}" for name, version, _ in expected]


# --- end to end: pack -> pixi-unpack with a real Python --------------------------------------------


@pytest.fixture
def wheel_project(
    tmp_path: Path, http_server: HttpServer, python_package: BuiltPackage
) -> tuple[Path, BuiltWheel]:
    pytest.importorskip("pixi_pack.install.activate")
    pytest.importorskip("pixi_pack.install.link")
    if current_subdir() != "linux-64":
        pytest.skip("end-to-end tests run on linux-64")
    write_channel(http_server.root / "channel", [python_package])
    channel_url = http_server.url_for("channel")
    wheel = _tool_wheel(http_server.root / "wheels")
    project = tmp_path / "project"
    entries: list[LockEntry] = [
        conda(python_package, channel_url),
        pypi(wheel, f"direct+{http_server.url_for(wheel.path)}"),
    ]
    write_lock(project / "pixi.lock", {"default": {"linux-64": entries}}, [channel_url])
    return project, wheel


def test_end_to_end_wheel_runs_in_the_unpacked_environment(
    tmp_path: Path, wheel_project: tuple[Path, BuiltWheel], capsys: pytest.CaptureFixture[str]
) -> None:
    project, _ = wheel_project
    out = tmp_path / "environment.tar"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out)]) == 0
    target = tmp_path / "target"
    assert unpack_main([str(out), "-o", str(target)]) == 0, capsys.readouterr().err
    env = target / "env"
    python = env / "bin" / "python"
    code = "import my_tool, importlib.metadata as m; print(m.version('my-tool'), m.distribution('my-tool').read_text('INSTALLER'))"
    result = subprocess.run(
        [python, "-c", code], env=_clean_env(), capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["0.3", "pixi-unpack"]
    run = subprocess.run([env / "bin/my-tool"], env=_clean_env(), capture_output=True, text=True, check=True)
    assert run.stdout == f"my-tool says hi from {env}\n"
    script = subprocess.run(
        [env / "bin/my-script"], env=_clean_env(), capture_output=True, text=True, check=True
    )
    assert script.stdout == run.stdout
    assert (env / "share/my-tool/notes.txt").read_text() == "notes\n"
    assert not list(target.glob(".env.*"))  # no build folder left behind


def test_end_to_end_tampered_wheel_leaves_no_environment(
    tmp_path: Path, wheel_project: tuple[Path, BuiltWheel], capsys: pytest.CaptureFixture[str]
) -> None:
    project, wheel = wheel_project
    out = tmp_path / "pack"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out), "--directory-only"]) == 0
    (out / "pypi" / wheel.file_name).write_bytes(b"PK\x05\x06" + b"\0" * 18)
    target = tmp_path / "target"
    assert unpack_main([str(out), "-o", str(target)]) == 1
    assert f"pypi/{wheel.file_name} in the pack: sha256 mismatch" in capsys.readouterr().err
    assert not target.exists()  # the wheels are checked before anything is written
