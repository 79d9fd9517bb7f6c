"""pixi's ``[activation]`` travels in the pack: variables and scripts, in pixi's order, for the platform."""

from __future__ import annotations

import contextlib
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from builders import build_package
from hypothesis import given, settings
from hypothesis import strategies as st
from lockfiles import conda, write_lock

from pixi_pack.cli import pack_main, unpack_main
from pixi_pack.errors import ArchiveError
from pixi_pack.formats.activation import parse_activation_json
from pixi_pack.platforms import current_subdir

pytestmark = pytest.mark.skipif(current_subdir() != "linux-64", reason="end-to-end tests run on linux-64")

MANIFEST = """
[workspace]
name = "carry"
[activation]
env = { GREETING = "hello from pixi.toml", OVERRIDDEN = "top" }
scripts = ["scripts/setup.sh", "scripts/setup.fish"]
[target.linux-64.activation]
env = { ONLY_LINUX = "yes" }
[target.win-64.activation]
env = { ONLY_WINDOWS = "yes" }
scripts = ["scripts/win.bat"]
[feature.extra.activation]
env = { OVERRIDDEN = "feature" }
scripts = ["./scripts/extra.sh"]
[environments]
extra = ["extra"]
"""


def _project(tmp_path: Path, manifest: str = MANIFEST) -> Path:
    channel = tmp_path / "channel"
    package = build_package(
        channel / "linux-64",
        "pkg-activates",
        "1.0",
        "0",
        files={"etc/conda/activate.d/pkg.sh": 'export ORDER="${ORDER:-}pkg,"\n'},
    )
    project = tmp_path / "project"
    entries = [conda(package, channel.as_uri())]
    write_lock(
        project / "pixi.lock",
        {"default": {"linux-64": entries}, "extra": {"linux-64": entries}},
        [channel.as_uri()],
    )
    (project / "pixi.toml").write_text(manifest)
    scripts = project / "scripts"
    scripts.mkdir()
    (scripts / "setup.sh").write_text(
        'export ORDER="${ORDER:-}setup,"\nexport OVERRIDDEN=script\nexport SEEN="$GREETING"\n'
    )
    (scripts / "setup.fish").write_text("set -gx FISHY 1\n")
    (scripts / "extra.sh").write_text('export ORDER="${ORDER:-}extra,"\n')
    (scripts / "win.bat").write_text("@SET WIN=1\r\n")
    return project


def _members(tar: Path) -> dict[str, bytes]:
    with tarfile.open(tar) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_the_activation_is_packed_in_pixi_s_order_for_the_platform(tmp_path: Path) -> None:
    project = _project(tmp_path)
    tar = tmp_path / "env.tar"
    assert pack_main([str(project), "-e", "extra", "-p", "linux-64", "-o", str(tar)]) == 0
    members = _members(tar)
    carried = json.loads(members["activation/activation.json"])
    assert carried == {
        "env": [["GREETING", "hello from pixi.toml"], ["OVERRIDDEN", "feature"], ["ONLY_LINUX", "yes"]],
        "scripts": ["scripts/setup.sh", "scripts/setup.fish", "scripts/extra.sh"],
    }
    assert members["activation/scripts/extra.sh"] == (project / "scripts" / "extra.sh").read_bytes()
    assert "activation/scripts/win.bat" not in members  # win-64's target is not linux-64's
    windows = tmp_path / "win.tar"
    assert (
        pack_main([str(project), "-p", "win-64", "-o", str(windows)]) == 1
    )  # the lock has no win-64: refused


def test_activate_sh_runs_the_scripts_then_sets_the_variables(tmp_path: Path) -> None:
    project = _project(tmp_path)
    tar = tmp_path / "env.tar"
    assert pack_main([str(project), "-e", "extra", "-p", "linux-64", "-o", str(tar)]) == 0
    out = tmp_path / "out"
    assert unpack_main([str(tar), "-o", str(out)]) == 0
    probe = (
        '. ./activate.sh; printf "%s|%s|%s|%s|%s\\n" "$ORDER" "$GREETING" "$OVERRIDDEN" "$ONLY_LINUX" "$SEEN"'
    )
    result = subprocess.run(["bash", "-c", probe], cwd=out, capture_output=True, text=True, check=True)
    # The package's activate.d first, the manifest's scripts in order, then its variables (which win).
    assert result.stdout.strip() == "pkg,setup,extra,|hello from pixi.toml|feature|yes|"
    assert (out / "env" / "etc" / "pixi-pack" / "activation" / "scripts" / "setup.fish").is_file()
    assert unpack_main([str(tar), "-o", str(tmp_path / "fish"), "-s", "fish"]) == 0
    fish = (tmp_path / "fish" / "activate.fish").read_text()
    assert "scripts/setup.fish" in fish and "setup.sh" not in fish
    assert fish.rstrip().endswith('set -gx ONLY_LINUX "yes"')


def test_pyproject_tool_pixi_activation(tmp_path: Path) -> None:
    project = _project(tmp_path, "")
    (project / "pixi.toml").unlink()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\n[tool.pixi.workspace]\nplatforms = ["linux-64"]\n'
        '[tool.pixi.activation]\nenv = { FROM_PYPROJECT = "1" }\n'
    )
    tar = tmp_path / "env.tar"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(tar)]) == 0
    assert json.loads(_members(tar)["activation/activation.json"]) == {
        "env": [["FROM_PYPROJECT", "1"]],
        "scripts": [],
    }


def test_no_activation_no_folder(tmp_path: Path) -> None:
    project = _project(tmp_path, "[workspace]\nname = 'plain'\n")
    tar = tmp_path / "env.tar"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(tar)]) == 0
    assert not [n for n in _members(tar) if n.startswith("activation/")]


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("[activation]\nscripts = ['../outside.sh']\n", "must be a path inside the project"),
        ("[activation]\nscripts = ['/etc/profile']\n", "must be a path inside the project"),
        (
            "[activation]\nscripts = ['scripts/missing.sh']\n",
            "could not read activation script scripts/missing.sh",
        ),
        ("[activation]\nscripts = ['scripts/link.sh']\n", "leads outside the project"),
        ("[activation]\nenv = { 'A-B' = 'x' }\n", "activation.env must map variable names to strings"),
        ("[activation]\nenv = { A = 1 }\n", "activation.env must map variable names to strings"),
        ("[activation]\nscripts = 'x.sh'\n", "activation.scripts must be an array"),
    ],
)
def test_hostile_activation_in_the_manifest_is_refused(
    tmp_path: Path, manifest: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path, "[workspace]\nname = 'x'\n" + manifest)
    (tmp_path / "secret.sh").write_text("secret\n")
    (project / "scripts" / "link.sh").symlink_to(tmp_path / "secret.sh")
    assert pack_main([str(project), "-p", "linux-64", "-o", str(tmp_path / "env.tar")]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "env.tar").exists()


@pytest.mark.parametrize(
    "document",
    [
        {"env": {"A": "1"}},
        {"env": [["A-B", "1"]]},
        {"env": [["A", 1]]},
        {"scripts": ["../../etc/evil.sh"]},
        {"scripts": ["/etc/evil.sh"]},
        {"scripts": "x"},
        [],
    ],
)
def test_a_hostile_carried_activation_is_refused(document: object) -> None:
    with pytest.raises(ArchiveError, match=r"malformed activation/activation\.json"):
        parse_activation_json(json.dumps(document), "activation/activation.json")


def test_a_pack_missing_a_carried_script_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path)
    folder = tmp_path / "folder"
    assert pack_main([str(project), "-p", "linux-64", "--directory-only", "-o", str(folder)]) == 0
    (folder / "activation" / "scripts" / "setup.sh").unlink()
    out = tmp_path / "out"
    assert unpack_main([str(folder), "-o", str(out)]) == 1
    assert "names activation/scripts/setup.sh, which it does not hold" in capsys.readouterr().err
    assert not (out / "env").exists()


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
        lambda x: st.one_of(
            st.lists(x, max_size=3), st.dictionaries(st.sampled_from(["env", "scripts", "x"]), x, max_size=3)
        ),
        max_leaves=12,
    )
)
def test_fuzz_a_carried_activation_is_read_or_our_error(document: object) -> None:
    with contextlib.suppress(ArchiveError):
        parse_activation_json(json.dumps(document), "activation/activation.json")
