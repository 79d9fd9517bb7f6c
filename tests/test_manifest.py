"""The manifest is read and checked: invalid TOML is an error, a stale lock gets a warning."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from conftest import Channel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lockfiles import conda, write_lock

from pixi_pack.cli import pack_main
from pixi_pack.errors import LockfileError
from pixi_pack.lock.manifest import activation_of, manifest_from, parse_manifest, selector_matches, unlocked
from pixi_pack.models import CondaPackage, LockedEnvironment, PypiPackage

PIXI_TOML = Path("/project/pixi.toml")
PYPROJECT = Path("/project/pyproject.toml")


def _env(
    name: str = "default", conda_names: tuple[str, ...] = (), pypi_names: tuple[str, ...] = ()
) -> LockedEnvironment:
    packages = tuple(
        CondaPackage(
            f"https://x/{n}-1-0.conda",
            f"{n}-1-0.conda",
            "linux-64",
            {"name": n, "version": "1", "build": "0"},
        )
        for n in conda_names
    )
    wheels = tuple(
        PypiPackage(f"https://x/{n}-1-py3-none-any.whl", f"{n}-1-py3-none-any.whl", n, "1", None)
        for n in pypi_names
    )
    return LockedEnvironment(name, "linux-64", (), packages, wheels)


def test_dependencies_the_lock_lacks_are_found_per_environment_and_platform() -> None:
    manifest = parse_manifest(
        """
[workspace]
name = "demo"
[dependencies]
python = "3.12.*"
numpy = ">=2"
[target.unix.dependencies]
readline = "*"
[target.win-64.dependencies]
pywin32 = "*"
[target.linux.pypi-dependencies]
Flask_Login = "*"
[feature.test.dependencies]
pytest = "*"
[feature.docs.dependencies]
sphinx = "*"
[environments]
test = ["test"]
docs = { features = ["docs"], no-default-feature = true }
""",
        PIXI_TOML,
    )
    assert manifest is not None
    missing = unlocked(manifest, _env(conda_names=("python",), pypi_names=("flask-login",)), "linux-64")
    assert (missing.conda, missing.pypi) == (("numpy", "readline"), ())
    missing = unlocked(manifest, _env("test", conda_names=("python", "numpy", "readline")), "linux-64")
    assert (missing.conda, missing.pypi) == (("pytest",), ("Flask_Login",))
    assert unlocked(manifest, _env("docs", conda_names=("sphinx",)), "linux-64").conda == ()
    assert unlocked(manifest, _env(conda_names=("python", "numpy")), "win-64").conda == ("pywin32",)


def test_pyproject_dependencies_are_pypi_dependencies_of_their_feature() -> None:
    manifest = parse_manifest(
        """
[project]
name = "app"
dependencies = ["requests>=2.28", "rich[jupyter] ; python_version > '3.9'"]
[project.optional-dependencies]
dev = ["pytest"]
[tool.pixi.workspace]
channels = ["conda-forge"]
platforms = ["linux-64"]
[tool.pixi.dependencies]
python = "*"
[tool.pixi.environments]
dev = ["dev"]
""",
        PYPROJECT,
    )
    assert manifest is not None
    assert unlocked(manifest, _env(conda_names=("python",), pypi_names=("requests",)), "linux-64").pypi == (
        "rich",
    )
    assert unlocked(manifest, _env("dev", conda_names=("python",)), "linux-64").pypi == (
        "pytest",
        "requests",
        "rich",
    )


def test_a_pyproject_without_tool_pixi_is_not_a_pixi_manifest() -> None:
    assert parse_manifest('[project]\nname = "x"\ndependencies = ["numpy"]\n', PYPROJECT) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("garbage = [", r"could not parse /project/pixi.toml: .* \(is it a valid TOML file\?\)"),
        ("dependencies = 5", r"invalid pixi.toml \(/project/pixi.toml\): dependencies must be a table"),
        ("[feature]\ntest = 1", r"feature.test must be a table"),
        ("[target]\nlinux-64 = []", r"target.linux-64 must be a table"),
        ("[environments]\ntest = 1", r"environments.test must be an array"),
        ("[environments]\ntest = [1]", r"environments.test must list feature names"),
        (
            "[environments.t]\nno-default-feature = 'yes'",
            r"environments.t.no-default-feature must be true or false",
        ),
        ("[dependencies]\nnumpy = '1'\nnumpy = '2'", r"could not parse .*overwrite"),
    ],
)
def test_a_malformed_manifest_is_an_error_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(LockfileError, match=message):
        parse_manifest(text, PIXI_TOML)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[project]\ndependencies = 'numpy'\n[tool.pixi]\n", r"project.dependencies must be an array"),
        ("[project]\ndependencies = ['>=1']\n[tool.pixi]\n", r"project.dependencies\[0\] must be a PEP 508"),
        ("[project.optional-dependencies]\nx = [1]\n[tool.pixi]\n", r"optional-dependencies.x\[0\] must be"),
        ("tool = 1", r"tool must be a table"),
        ("[tool]\npixi = 1", r"tool.pixi must be a table"),
    ],
)
def test_a_malformed_pyproject_is_an_error_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(LockfileError, match=message):
        parse_manifest(text, PYPROJECT)


@pytest.mark.parametrize(
    ("selector", "subdir", "applies"),
    [
        ("linux-64", "linux-64", True),
        ("linux", "linux-aarch64", True),
        ("unix", "osx-arm64", True),
        ("unix", "win-64", False),
        ("win", "win-64", True),
        ("osx", "linux-64", False),
        ("win-64", "linux-64", False),
    ],
)
def test_target_selectors(selector: str, subdir: str, applies: bool) -> None:
    assert selector_matches(selector, subdir) is applies


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300), st.sampled_from([PIXI_TOML, PYPROJECT]))
def test_fuzz_any_text_is_a_manifest_or_our_error(text: str, path: Path) -> None:
    with contextlib.suppress(LockfileError):
        parse_manifest(text, path)


_toml_values: st.SearchStrategy[object] = st.recursive(
    st.one_of(st.booleans(), st.integers(), st.text(max_size=8), st.just([])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "dependencies",
                    "pypi-dependencies",
                    "target",
                    "feature",
                    "environments",
                    "features",
                    "no-default-feature",
                    "activation",
                    "env",
                    "scripts",
                    "linux-64",
                    "unix",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "dependencies",
                "pypi-dependencies",
                "target",
                "feature",
                "environments",
                "project",
                "tool",
                "activation",
            ]
        ),
        _toml_values,
        max_size=5,
    )
)
def test_fuzz_any_structure_is_a_manifest_or_our_error(data: dict[str, object]) -> None:
    """Every shape of table reaches the type checks, not a TypeError or AttributeError."""
    for path in (PIXI_TOML, PYPROJECT):
        try:
            found = manifest_from(data, path)
        except LockfileError:
            continue
        if found is not None:
            unlocked(found, _env(), "linux-64")
            activation_of(found, "default", "linux-64")


# --- end to end -----------------------------------------------------------------------------------


def _project(tmp_path: Path, channel: Channel, manifest: str) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pixi.toml").write_text(manifest)
    packages = list(channel.packages.values())
    write_lock(
        project / "pixi.lock",
        {"default": {"linux-64": [conda(p, channel.url) for p in packages]}},
        [channel.url],
    )
    return project


def test_invalid_toml_stops_the_pack(
    tmp_path: Path, channel: Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path, channel, "[workspace]\ngarbage = [\n")
    assert pack_main([str(project), "-p", "linux-64", "-o", str(tmp_path / "out.tar")]) == 1
    assert f"error: could not parse {project / 'pixi.toml'}: " in capsys.readouterr().err
    assert not (tmp_path / "out.tar").exists()


def test_a_stale_lock_is_packed_with_a_warning(
    tmp_path: Path, channel: Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(
        tmp_path, channel, "[workspace]\nname = 'demo'\n[dependencies]\nhello = '*'\nnumpy = '>=2'\n"
    )
    assert pack_main([str(project / "pixi.toml"), "-p", "linux-64", "-o", str(tmp_path / "out.tar")]) == 0
    err = capsys.readouterr().err
    assert (
        "warning: pixi.lock looks out of date: pixi.toml declares numpy for environment default, which "
        "pixi.lock does not have for linux-64; run `pixi lock`"
    ) in err
    assert (tmp_path / "out.tar").is_file()


def test_an_environment_only_the_manifest_has_hints_at_pixi_lock(
    tmp_path: Path, channel: Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(
        tmp_path,
        channel,
        "[workspace]\nname = 'demo'\n[feature.t.dependencies]\n[environments]\nprod = ['t']\n",
    )
    assert pack_main([str(project), "-p", "linux-64", "-e", "prod", "-o", str(tmp_path / "out.tar")]) == 1
    err = capsys.readouterr().err
    assert (
        "error: environment not found in lockfile: prod (available: default); pixi.toml defines it, so pixi.lock looks out of date: run `pixi lock`"
        in err
    )
    assert pack_main([str(project), "-p", "linux-64", "-e", "nope", "-o", str(tmp_path / "out.tar")]) == 1
    assert "pixi lock" not in capsys.readouterr().err
