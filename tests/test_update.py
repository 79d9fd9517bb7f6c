"""Updating an environment in place: ``pixi-unpack --update`` with a full pack, and delta packs.

Every update is checked against the reference: rattler.install of the new package set at the same
prefix, compared file by file and in conda-meta, as tests/test_link.py compares fresh installs. Kept
packages must keep their files (same inodes), and a SIGKILL at any step must leave, after the next run,
the new environment.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from builders import BuiltPackage, BuiltWheel, File, build_package, build_wheel, text_prefix
from hypothesis import given, settings
from hypothesis import strategies as st
from lockfiles import LockEntry, conda_at, pypi, write_lock
from test_link import RECORD_FIELDS, installed_tree, paths_data, rattler_install

from pixi_pack.cli import pack_main, unpack_main
from pixi_pack.errors import ArchiveError, InstallError, PixiPackError
from pixi_pack.formats.channel import parse_identity
from pixi_pack.install.journal import JOURNAL, STAGING, complete_pending
from pixi_pack.install.update import read_environment
from pixi_pack.pack.selfextract import decode_ps1_pack

ROOT = Path(__file__).resolve().parents[1]


def make_pack(
    folder: Path,
    packages: Sequence[BuiltPackage],
    *extra: str,
    platform: str = "linux-64",
    wheels: Sequence[BuiltWheel] = (),
) -> Path:
    """A pack (tar, unless ``extra`` names another output) of ``packages`` and ``wheels``, locked by paths."""
    project = folder / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "pixi.toml").write_text("[workspace]\nname = 'update'\n")
    entries: list[LockEntry] = [conda_at(p, p.path) for p in packages]
    entries += [pypi(w, w.path) for w in wheels]
    write_lock(project / "pixi.lock", {"default": {platform: entries}}, ["https://conda.anaconda.org/x"])
    out = folder / "environment.tar"
    assert pack_main([str(project), "-p", platform, "-o", str(out), "-q", *extra]) == 0
    return out


def snapshot(prefix: Path) -> tuple[dict[str, tuple[str, str]], dict[str, dict[str, Any]]]:
    """What two installs must agree on: the tree (without conda-meta) and conda-meta's key fields."""
    metas = {}
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        record = json.loads(path.read_text())
        metas[path.name] = {
            **{key: record.get(key) for key in RECORD_FIELDS},
            "files": sorted(record["files"]),
            "paths": paths_data(record),
        }
    return installed_tree(prefix), metas


def reference(packages: Sequence[BuiltPackage], prefix: Path, cache: Path) -> Any:
    """rattler.install of ``packages`` at ``prefix``, as a snapshot; the prefix is removed afterwards."""
    rattler_install([p.path for p in packages], prefix, cache)
    taken = snapshot(prefix)
    shutil.rmtree(prefix)
    return taken


def inode(path: Path) -> int:
    return os.lstat(path).st_ino


@pytest.fixture
def world(tmp_path: Path) -> dict[str, BuiltPackage]:
    """Packages of an old and a new environment: upgraded, downgraded, removed, added, kept."""
    out = tmp_path / "pkgs"

    def package(name: str, version: str, files: dict[str, Any], **kwargs: Any) -> BuiltPackage:
        return build_package(out / f"{name}-{version}", name, version, files=files, **kwargs)

    return {
        "lib-1": package(
            "lib", "1.0", {"lib/libx.so.1": "v1", "share/lib/data": text_prefix("@PREFIX@ v1\n")}
        ),
        "lib-2": package(
            "lib", "2.0", {"lib/libx.so.2": "v2", "share/lib/data": text_prefix("@PREFIX@ v2\n")}
        ),
        "tool-3": package("tool", "3.0", {"bin/tool": File("#!/bin/sh\necho 3\n", mode=0o755)}),
        "tool-2": package("tool", "2.0", {"bin/tool": File("#!/bin/sh\necho 2\n", mode=0o755)}),
        "gone-1": package("gone", "1.0", {"share/gone/a.txt": "a", "share/gone/deep/b.txt": "b"}),
        "new-1": package("new", "1.0", {"share/new/n.txt": "n"}),
        "kept-1": package("kept", "1.0", {"share/kept/k.txt": "k", "bin/kept": File("k", mode=0o755)}),
    }


def test_update_matches_a_fresh_rattler_install(tmp_path: Path, world: dict[str, BuiltPackage]) -> None:
    old = [world["lib-1"], world["tool-3"], world["gone-1"], world["kept-1"]]
    new = [world["lib-2"], world["tool-2"], world["new-1"], world["kept-1"]]
    out = tmp_path / "out"
    expected = reference(new, out / "env", tmp_path / "cache")
    assert unpack_main([str(make_pack(tmp_path / "old", old)), "-o", str(out)]) == 0
    kept = inode(out / "env" / "share/kept/k.txt"), inode(out / "env" / "bin/kept")
    assert unpack_main([str(make_pack(tmp_path / "new", new)), "-o", str(out), "--update"]) == 0
    assert snapshot(out / "env") == expected
    assert (inode(out / "env" / "share/kept/k.txt"), inode(out / "env" / "bin/kept")) == kept
    assert not (out / "env" / JOURNAL).exists() and not (out / "env" / STAGING).exists()
    assert not (out / "env" / "share/gone").exists()  # its emptied folders go with it
    assert sorted(p.name for p in out.iterdir()) == ["activate.sh", "env"]


def test_an_update_to_the_same_packages_does_nothing(
    tmp_path: Path, world: dict[str, BuiltPackage], capsys: pytest.CaptureFixture[str]
) -> None:
    tar = make_pack(tmp_path / "p", [world["lib-1"], world["kept-1"]])
    out = tmp_path / "out"
    assert unpack_main([str(tar), "-o", str(out)]) == 0
    before = {p: inode(p) for p in (out / "env").rglob("*")}
    assert unpack_main([str(tar), "-o", str(out), "--update"]) == 0
    assert "nothing to update" in capsys.readouterr().err
    assert {p: inode(p) for p in (out / "env").rglob("*")} == before


def test_a_changed_file_of_a_removed_package_is_left(
    tmp_path: Path, world: dict[str, BuiltPackage], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert unpack_main([str(make_pack(tmp_path / "old", [world["gone-1"]])), "-o", str(out)]) == 0
    (out / "env" / "share/gone/a.txt").write_text("my notes")
    (out / "env" / "share/gone/mine.txt").write_text("mine")
    assert unpack_main([str(make_pack(tmp_path / "new", [world["new-1"]])), "-o", str(out), "--update"]) == 0
    assert (
        "gone: leaving share/gone/a.txt, which was changed since it was installed" in capsys.readouterr().err
    )
    assert (out / "env" / "share/gone/a.txt").read_text() == "my notes"
    assert (out / "env" / "share/gone/mine.txt").read_text() == "mine"  # not a package's: untouched
    assert not (out / "env" / "share/gone/deep").exists()
    assert [p.name for p in (out / "env" / "conda-meta").glob("*.json")] == [
        f"{world['new-1'].path.name[:-6]}.json"
    ]


def test_a_python_minor_change_relinks_noarch_packages(tmp_path: Path) -> None:
    out_dir = tmp_path / "pkgs"
    py311 = build_package(out_dir / "a", "python", "3.11.7")
    py312 = build_package(out_dir / "b", "python", "3.12.1")
    tool = build_package(
        out_dir / "c",
        "tool",
        noarch="python",
        entry_points=["tool = tool.cli:main"],
        files={"site-packages/tool/cli.py": "def main(): pass\n"},
        depends=["python"],
    )
    out = tmp_path / "out"
    expected = reference([py312, tool], out / "env", tmp_path / "cache")
    assert unpack_main([str(make_pack(tmp_path / "old", [py311, tool])), "-o", str(out)]) == 0
    assert (out / "env" / "lib/python3.11/site-packages/tool/cli.py").is_file()
    assert unpack_main([str(make_pack(tmp_path / "new", [py312, tool])), "-o", str(out), "--update"]) == 0
    assert snapshot(out / "env") == expected
    assert not (out / "env" / "lib/python3.11").exists()
    assert (out / "env" / "bin/tool").read_text().startswith(f"#!{out / 'env'}/bin/python3.12")


def test_a_clobber_moves_between_packages(tmp_path: Path) -> None:
    """``share/f`` is held by ``base`` and by ``top`` (which depends on it, so wins). When ``top`` stops
    holding it, ``base``'s copy moves out of ``__clobbers__``; when a new ``late`` takes it, it moves back."""
    pkgs = tmp_path / "pkgs"
    base = build_package(pkgs / "a", "base", files={"share/f": "from base", "share/b": "b"})
    top = build_package(pkgs / "b", "top", files={"share/f": "from top"}, depends=["base"])
    top2 = build_package(pkgs / "c", "top", "2.0", files={"share/t": "t"}, depends=["base"])
    late = build_package(pkgs / "d", "late", files={"share/f": "from late"}, depends=["base"])
    out = tmp_path / "out"
    steps = [[base, top], [base, top2], [base, top2, late]]
    assert unpack_main([str(make_pack(tmp_path / "0", steps[0])), "-o", str(out)]) == 0
    assert (out / "env" / "share/f").read_text() == "from top"
    base_copy = inode(out / "env" / "__clobbers__/base/share/f")
    for index, packages in enumerate(steps[1:], start=1):
        expected = reference(packages, tmp_path / "reference" / "env", tmp_path / "cache")
        # rattler's reference was installed elsewhere: compare after moving ours there.
        assert unpack_main([str(make_pack(tmp_path / str(index), packages)), "-o", str(out), "--update"]) == 0
        shutil.move(out / "env", tmp_path / "reference" / "env")
        assert snapshot(tmp_path / "reference" / "env") == expected, index
        shutil.move(tmp_path / "reference" / "env", out / "env")
        if index == 1:
            assert (out / "env" / "share/f").read_text() == "from base"
            assert inode(out / "env" / "share/f") == base_copy  # moved, not rewritten
    assert (out / "env" / "share/f").read_text() == "from late"
    assert inode(out / "env" / "__clobbers__/base/share/f") == base_copy


def test_without_update_an_existing_environment_is_refused(
    tmp_path: Path, world: dict[str, BuiltPackage], capsys: pytest.CaptureFixture[str]
) -> None:
    tar = make_pack(tmp_path / "p", [world["lib-1"]])
    out = tmp_path / "out"
    assert unpack_main([str(tar), "-o", str(out)]) == 0
    assert unpack_main([str(tar), "-o", str(out)]) == 1
    assert "pass --update to update it" in capsys.readouterr().err


# --- delta packs -------------------------------------------------------------------------------------


def test_a_delta_pack_holds_only_what_the_base_lacks(tmp_path: Path, world: dict[str, BuiltPackage]) -> None:
    old = [world["lib-1"], world["tool-3"], world["kept-1"]]
    new = [world["lib-2"], world["tool-3"], world["kept-1"], world["new-1"]]
    base = make_pack(tmp_path / "old", old)
    full = make_pack(tmp_path / "full", new)
    out = tmp_path / "out"
    expected = reference(new, out / "env", tmp_path / "cache")
    assert unpack_main([str(base), "-o", str(out)]) == 0
    for form in ("tar", "json"):
        where = base
        if form == "json":
            where = tmp_path / "pixi-pack.json"
            subprocess.run(["tar", "-xf", str(base), "-C", str(tmp_path), "pixi-pack.json"], check=True)
        delta = make_pack(tmp_path / f"delta-{form}", new, "--base", str(where))
        names = subprocess.run(["tar", "-tf", str(delta)], capture_output=True, text=True, check=True).stdout
        archives = sorted(n.rsplit("/", 1)[1] for n in names.split() if n.endswith((".conda", ".tar.bz2")))
        assert archives == sorted([world["lib-2"].path.name, world["new-1"].path.name])
        assert delta.stat().st_size <= full.stat().st_size  # tiny packages: the tar rounds up to 10 KiB
    meta = json.loads(
        subprocess.run(["tar", "-xOf", str(delta), "pixi-pack.json"], capture_output=True, check=True).stdout
    )
    base_meta = json.loads((tmp_path / "pixi-pack.json").read_text())
    assert meta["base-environment-sha256"] == base_meta["environment-sha256"]
    assert len(meta["conda-sha256"]) == 4
    assert unpack_main([str(delta), "-o", str(out)]) == 0  # a delta pack updates without --update
    assert snapshot(out / "env") == expected


def test_a_delta_for_another_environment_is_refused_untouched(
    tmp_path: Path, world: dict[str, BuiltPackage], capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_pack(tmp_path / "old", [world["lib-1"]])
    delta = make_pack(tmp_path / "delta", [world["lib-2"]], "--base", str(base))
    out = tmp_path / "out"
    assert unpack_main([str(make_pack(tmp_path / "other", [world["kept-1"]])), "-o", str(out)]) == 0
    before = snapshot(out / "env")
    capsys.readouterr()
    assert unpack_main([str(delta), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    base_identity = json.loads(
        subprocess.run(["tar", "-xOf", str(base), "pixi-pack.json"], capture_output=True, check=True).stdout
    )["environment-sha256"]
    assert (
        f"is not the environment this delta pack updates: the pack applies to the environment {base_identity}"
        in err
    )
    assert snapshot(out / "env") == before
    assert unpack_main([str(delta), "-o", str(tmp_path / "fresh")]) == 1
    assert "this is a delta pack" in capsys.readouterr().err


def test_a_delta_against_another_platform_is_refused(
    tmp_path: Path, world: dict[str, BuiltPackage], capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_pack(tmp_path / "win", [world["new-1"]], platform="win-64")
    make_pack(tmp_path / "linux", [world["new-1"]])  # the project to pack against it
    capsys.readouterr()
    project = tmp_path / "linux" / "project"
    assert (
        pack_main([str(project), "-p", "linux-64", "-o", str(tmp_path / "d.tar"), "--base", str(base)]) == 1
    )
    assert "--base is a pack for win-64, and this pack is for linux-64" in capsys.readouterr().err
    assert not (tmp_path / "d.tar").exists()


# --- interrupted updates ---------------------------------------------------------------------------------

_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from pixi_pack.install import journal, update
    from pixi_pack.cli import unpack_main
    where, at = sys.argv[1], int(sys.argv[2])
    count = [0]
    def killing(original):
        def wrapper(*args, **kwargs):
            count[0] += 1
            if count[0] == at:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)
        return wrapper
    if where == "step":
        journal._take = killing(journal._take)
    else:
        update.plan_steps = killing(update.plan_steps)
    sys.exit(unpack_main(sys.argv[3:]))
    """
)


@pytest.mark.parametrize(
    ("where", "at"), [("staging", 1), ("step", 1), ("step", 3), ("step", 7), ("step", 12)]
)
def test_a_killed_update_is_completed_by_the_next_run(
    tmp_path: Path, world: dict[str, BuiltPackage], where: str, at: int
) -> None:
    old = [world["lib-1"], world["tool-3"], world["gone-1"], world["kept-1"]]
    new = [world["lib-2"], world["tool-2"], world["new-1"], world["kept-1"]]
    out = tmp_path / "out"
    expected = reference(new, out / "env", tmp_path / "cache")
    old_tree = reference(old, out / "env", tmp_path / "cache")
    assert unpack_main([str(make_pack(tmp_path / "old", old)), "-o", str(out)]) == 0
    new_tar = make_pack(tmp_path / "new", new)
    script = _KILLER.format(root=str(ROOT))
    killed = subprocess.run(
        [sys.executable, "-c", script, where, str(at), str(new_tar), "-o", str(out), "--update", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    journal = (out / "env" / JOURNAL).exists()
    assert journal is (where == "step")  # killed after the commit: the journal says what is left to do
    if where == "staging":
        # Killed before the commit: the next run finds the old environment and drops the staged files.
        assert unpack_main([str(make_pack(tmp_path / "again", old)), "-o", str(out), "--update"]) == 0
        assert snapshot(out / "env") == old_tree
        assert not (out / "env" / STAGING).exists()
    # The next run completes what was committed (or starts over), then finds nothing more to do.
    assert unpack_main([str(new_tar), "-o", str(out), "--update"]) == 0
    assert snapshot(out / "env") == expected
    assert not (out / "env" / JOURNAL).exists() and not (out / "env" / STAGING).exists()


def _json() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(
                st.sampled_from(
                    [
                        "kind",
                        "target",
                        "source",
                        "inode",
                        "steps",
                        "conda-sha256",
                        "base-environment-sha256",
                        "x",
                    ]
                ),
                inner,
                max_size=4,
            ),
        ),
        max_leaves=12,
    )


# --- hostile input -------------------------------------------------------------------------------------


def test_a_conda_meta_path_leading_out_is_refused_untouched(
    tmp_path: Path, world: dict[str, BuiltPackage], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert unpack_main([str(make_pack(tmp_path / "old", [world["gone-1"]])), "-o", str(out)]) == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    meta = next((out / "env" / "conda-meta").glob("gone-*.json"))
    record = json.loads(meta.read_text())
    record["paths_data"]["paths"].append({"_path": "../../victim.txt", "path_type": "hardlink"})
    meta.write_text(json.dumps(record))
    before = snapshot(out / "env")
    capsys.readouterr()
    assert unpack_main([str(make_pack(tmp_path / "new", [world["new-1"]])), "-o", str(out), "--update"]) == 1
    assert (
        "refusing the path '../../victim.txt': not a plain path inside the environment"
        in capsys.readouterr().err
    )
    assert victim.read_text() == "keep me"
    assert snapshot(out / "env") == before
    assert not (out / "env" / STAGING).exists()


def test_a_journal_leading_out_is_refused_before_any_step(
    tmp_path: Path, world: dict[str, BuiltPackage], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    tar = make_pack(tmp_path / "old", [world["gone-1"]])
    assert unpack_main([str(tar), "-o", str(out)]) == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    a = out / "env" / "share/gone/a.txt"
    st = os.lstat(victim)
    steps = [
        {
            "kind": "remove",
            "target": "share/gone/a.txt",
            "source": "",
            "inode": [os.lstat(a).st_dev, os.lstat(a).st_ino],
        },
        {"kind": "remove", "target": "../../victim.txt", "source": "", "inode": [st.st_dev, st.st_ino]},
    ]
    (out / "env" / JOURNAL).write_text(json.dumps({"version": 1, "steps": steps}))
    assert unpack_main([str(tar), "-o", str(out), "--update"]) == 1
    assert "refusing the path '../../victim.txt'" in capsys.readouterr().err
    assert victim.read_text() == "keep me" and a.is_file()


@settings(max_examples=200, deadline=None)
@given(st.one_of(_json(), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_hostile_identity_and_journal_give_our_error(document: Any) -> None:
    text = document if isinstance(document, str) else json.dumps(document)
    with contextlib.suppress(ArchiveError):
        parse_identity(text)
    with tempfile.TemporaryDirectory() as folder:
        prefix = Path(folder)
        (prefix / "conda-meta").mkdir()
        (prefix / JOURNAL).write_text(text if isinstance(document, str) else json.dumps({"steps": document}))
        with contextlib.suppress(InstallError):
            complete_pending(prefix)


@settings(max_examples=200, deadline=None)
@given(_json(), st.binary(max_size=300))
def test_hostile_conda_meta_and_ps1_give_our_error(document: Any, data: bytes) -> None:
    """A conda-meta record of any shape is read or refused with our error; so is any file named .ps1."""
    with tempfile.TemporaryDirectory() as folder:
        prefix = Path(folder)
        (prefix / "conda-meta").mkdir()
        (prefix / "conda-meta" / "x-1-0.json").write_text(json.dumps(document))
        with contextlib.suppress(InstallError):
            read_environment(prefix)
        script = prefix / "environment.ps1"
        script.write_bytes(
            b"$PayloadOffset = 0\r\n$PayloadBase64Length = 99\r\n$PayloadLength = 50\r\n" + data
        )
        with contextlib.suppress(PixiPackError):
            decode_ps1_pack(script, io.BytesIO())


def test_verify_only_and_list_take_a_delta_pack(tmp_path: Path, world: dict[str, BuiltPackage]) -> None:
    base = make_pack(tmp_path / "old", [world["lib-1"], world["kept-1"]])
    delta = make_pack(tmp_path / "delta", [world["lib-2"], world["kept-1"]], "--base", str(base))
    assert unpack_main([str(delta), "--verify-only"]) == 0
    assert unpack_main([str(delta), "--list"]) == 0


def test_a_self_extracting_delta_updates_the_environment(
    tmp_path: Path, world: dict[str, BuiltPackage]
) -> None:
    from test_zipapp import zipapp_path

    old = [world["lib-1"], world["kept-1"]]
    new = [world["lib-2"], world["kept-1"], world["new-1"]]
    base = make_pack(tmp_path / "old", old)
    out = tmp_path / "out"
    expected = reference(new, out / "env", tmp_path / "cache")
    assert unpack_main([str(base), "-o", str(out)]) == 0
    script = tmp_path / "delta.sh"
    extra = ["--base", str(base), "--create-executable", "--pixi-unpack-source", str(zipapp_path())]
    make_pack(tmp_path / "delta", new, *extra, "-o", str(script))
    result = subprocess.run(
        ["sh", str(script), "-o", str(out)],
        env={"PATH": os.environ["PATH"], "PIXI_PACK_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert snapshot(out / "env") == expected


def test_a_ps1_base_is_decoded(
    tmp_path: Path, world: dict[str, BuiltPackage], capsys: pytest.CaptureFixture[str]
) -> None:
    """environment.ps1 carries its pack as base64: --base decodes it, streaming, to read what it has."""
    from test_zipapp import zipapp_path

    base = tmp_path / "environment.ps1"
    make_pack(
        tmp_path / "old",
        [world["lib-1"], world["kept-1"]],
        "--create-executable",
        "-o",
        str(base),
        "--pixi-unpack-source",
        str(zipapp_path()),
        platform="win-64",
    )
    delta = tmp_path / "delta.tar"
    make_pack(
        tmp_path / "new",
        [world["lib-2"], world["kept-1"]],
        "--base",
        str(base),
        "-o",
        str(delta),
        platform="win-64",
    )
    names = subprocess.run(["tar", "-tf", str(delta)], capture_output=True, text=True, check=True).stdout
    assert [n.rsplit("/", 1)[1] for n in names.split() if n.endswith(".conda")] == [world["lib-2"].path.name]
    forged = tmp_path / "forged.ps1"
    forged.write_text("# not a pack\r\n")
    capsys.readouterr()
    project = tmp_path / "new" / "project"
    assert (
        pack_main([str(project), "-p", "win-64", "-o", str(tmp_path / "x.tar"), "--base", str(forged)]) == 1
    )
    assert "is not an environment.ps1 written by pixi-pack" in capsys.readouterr().err


def test_an_update_reinstalls_the_wheels(tmp_path: Path, world: dict[str, BuiltPackage]) -> None:
    """Wheels are installed again on every update (their RECORD says what to remove): the result is what a
    fresh pixi-unpack of the new pack makes, the reference for wheels, which rattler does not install."""
    python = build_package(tmp_path / "py", "python", "3.11.7")
    one = build_wheel(
        tmp_path / "w1",
        "tool",
        "1.0",
        modules={"tool/__init__.py": "V = 1\n", "tool/old.py": ""},
        console_scripts={"tool": "tool:main"},
    )
    two = build_wheel(
        tmp_path / "w2",
        "tool",
        "2.0",
        modules={"tool/__init__.py": "V = 2\n"},
        console_scripts={"tool": "tool:main"},
    )

    old = make_pack(tmp_path / "old", [python, world["lib-1"]], wheels=[one])
    new = make_pack(tmp_path / "new", [python, world["lib-2"]], wheels=[two])
    out = tmp_path / "out"
    assert unpack_main([str(new), "-o", str(out), "-q"]) == 0
    expected = installed_tree(out / "env")
    shutil.rmtree(out)
    assert unpack_main([str(old), "-o", str(out), "-q"]) == 0
    assert (out / "env/lib/python3.11/site-packages/tool/old.py").is_file()
    assert unpack_main([str(new), "-o", str(out), "--update"]) == 0
    assert installed_tree(out / "env") == expected
    assert not (out / "env/lib/python3.11/site-packages/tool-1.0.dist-info").exists()
