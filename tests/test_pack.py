"""pixi-pack end to end over a local HTTP channel: layout, determinism, cache, mirrors, auth, errors."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from builders import BuiltPackage, build_package, write_channel
from conftest import Channel, HttpServer
from lockfiles import conda, conda_at, write_lock

from pixi_pack.cli import pack_main
from pixi_pack.errors import PixiPackError
from pixi_pack.formats.channel import environment_sha256
from pixi_pack.models import PackOptions
from pixi_pack.pack.assemble import pack


def _project(tmp_path: Path, server_channel: str, packages: list[BuiltPackage], version: int = 6) -> Path:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "pixi.toml").write_text("[workspace]\nname = 'demo'\n")
    write_lock(
        project / "pixi.lock",
        {"default": {"linux-64": [conda(p, server_channel) for p in packages]}},
        [server_channel],
        version=version,
    )
    return project


def _members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


@pytest.mark.parametrize("version", [6, 7])
def test_pack_layout(tmp_path: Path, served_channel: str, channel: Channel, version: int) -> None:
    packages = list(channel.packages.values())
    project = _project(tmp_path, served_channel, packages, version)
    out = tmp_path / "environment.tar"
    assert pack_main([str(project / "pixi.toml"), "-p", "linux-64", "-o", str(out)]) == 0
    members = _members(out)
    names = [m.name for m in members]
    assert names == [
        "pixi-pack.json",
        "environment.yml",
        "channel",
        "channel/linux-64",
        "channel/linux-64/repodata.json",
        "channel/linux-64/hello-1.2.3-h0_0.conda",
        "channel/linux-64/hello-old-0.1-0.tar.bz2",
        "channel/noarch",
        "channel/noarch/repodata.json",
        "channel/noarch/hello-data-1.0-0.tar.bz2",
    ]
    assert {(m.uid, m.gid, m.uname, m.mtime) for m in members} == {(0, 0, "", 315532800)}
    with tarfile.open(out) as tar:

        def read(name: str) -> bytes:
            f = tar.extractfile(name)
            assert f is not None
            return f.read()

        meta = json.loads(read("pixi-pack.json"))
        assert meta == {
            "version": "1",
            "pixi-pack-version": meta["pixi-pack-version"],
            "platform": "linux-64",
            # Where each package came from, for conda-meta's url and channel on the target.
            "conda-urls": {
                f"{p.subdir}/{p.file_name}": f"{served_channel}/{p.subdir}/{p.file_name}" for p in packages
            },
            # What a delta pack against this one may leave out, and the environment's identity.
            "conda-sha256": {f"{p.subdir}/{p.file_name}": p.sha256 for p in packages},
            "environment-sha256": environment_sha256(p.sha256 for p in packages),
        }
        env = yaml.safe_load(read("environment.yml"))
        assert env == {
            "channels": ["./channel", "nodefaults"],
            "dependencies": [f"{p.name}={p.version}={p.build}" for p in packages],
        }
        repodata = json.loads(read("channel/linux-64/repodata.json"))
        assert repodata["info"] == {"subdir": "linux-64"}
        hello = channel.packages["hello"]
        record = repodata["packages.conda"][hello.file_name]
        assert record["sha256"] == hello.sha256 and record["depends"] == ["hello-data >=1"]
        assert list(repodata["packages"]) == ["hello-old-0.1-0.tar.bz2"]
        assert read("channel/linux-64/" + hello.file_name) == hello.path.read_bytes()


def test_pack_is_byte_identical_twice_and_uses_the_cache(
    tmp_path: Path, served_channel: str, channel: Channel, http_server: HttpServer
) -> None:
    project = _project(tmp_path, served_channel, list(channel.packages.values()))
    cache = tmp_path / "cache"
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(first), "--use-cache", str(cache)]) == 0
    downloads = len(http_server.requests)
    assert downloads == 3
    assert (cache / "linux-64" / "hello-1.2.3-h0_0.conda").is_file()
    # Backup tools skip a tagged cache (https://bford.info/cachedir/), as upstream 0.7.10 tags it.
    assert (cache / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55\n")
    (cache / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n# mine\n")
    assert pack_main([str(project), "-p", "linux-64", "-o", str(second), "--use-cache", str(cache)]) == 0
    assert (cache / "CACHEDIR.TAG").read_text().endswith("# mine\n")  # an existing tag is left alone
    assert len(http_server.requests) == downloads  # everything came from the cache
    assert first.read_bytes() == second.read_bytes()


def test_directory_only(tmp_path: Path, served_channel: str, channel: Channel) -> None:
    project = _project(tmp_path, served_channel, list(channel.packages.values()))
    out = tmp_path / "env-folder"
    assert pack_main([str(project), "-p", "linux-64", "--directory-only", "-o", str(out)]) == 0
    assert (out / "pixi-pack.json").is_file()
    assert (out / "channel" / "noarch" / "hello-data-1.0-0.tar.bz2").is_file()
    assert not list(tmp_path.glob(".pixi-pack-*"))


def test_stdout_output_via_real_entry_point(tmp_path: Path, served_channel: str, channel: Channel) -> None:
    project = _project(tmp_path, served_channel, list(channel.packages.values()))
    result = subprocess.run(
        [sys.executable, "-m", "pixi_pack", "pack", str(project), "-p", "linux-64", "-o", "-"],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
        assert "pixi-pack.json" in tar.getnames()
    assert b"downloaded 3/3 packages" in result.stderr


#: What a plain pack never needs, so its start-up does not import it: the installer, and the package
#: readers (only ``--create-sbom`` reads a pack back).
_NOT_ON_A_PACKS_PATH = ("pixi_pack.install", "pixi_pack.formats.listing", "pixi_pack.formats.package_info")


def _modules_of_a_pack(argv: list[str]) -> list[str]:
    """The pixi_pack modules a fresh interpreter has imported once ``pixi-pack ARGV`` is done."""
    script = (
        "import sys\n"
        "from pixi_pack.cli import pack_main\n"
        "assert pack_main(sys.argv[1:]) == 0\n"
        "print(' '.join(m for m in sys.modules if m.startswith('pixi_pack')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_a_plain_pack_imports_neither_the_installer_nor_the_package_readers(
    tmp_path: Path, served_channel: str, channel: Channel
) -> None:
    project = _project(tmp_path, served_channel, list(channel.packages.values()))
    plain = _modules_of_a_pack([str(project), "-p", "linux-64", "-o", str(tmp_path / "a.tar"), "-q"])
    assert "pixi_pack.pack.fetch" in plain  # the check sees the modules of a pack
    assert [m for m in plain if m.startswith(_NOT_ON_A_PACKS_PATH)] == []
    sbom = ["--sbom", str(tmp_path / "sbom.json")]
    with_sbom = _modules_of_a_pack(
        [str(project), "-p", "linux-64", "-o", str(tmp_path / "b.tar"), "-q", *sbom]
    )
    assert "pixi_pack.formats.listing" in with_sbom


def test_library_pack_writes_to_the_stream_it_is_given(
    tmp_path: Path, served_channel: str, channel: Channel
) -> None:
    """``pack()`` never reaches for the process's stdout: the caller hands in the stream, or gets an error."""
    project = _project(tmp_path, served_channel, list(channel.packages.values()))
    options = PackOptions(manifest_path=project, output=None, platform="linux-64")
    stream = io.BytesIO()
    pack(options, stdout=stream)
    with tarfile.open(fileobj=io.BytesIO(stream.getvalue())) as tar:
        assert "pixi-pack.json" in tar.getnames()
    with pytest.raises(PixiPackError, match="no output path"):
        pack(options)


def test_local_paths_and_file_urls(tmp_path: Path) -> None:
    pkgs = tmp_path / "pkgs"
    a = build_package(pkgs / "linux-64", "a", "1.0", "0")
    b = build_package(pkgs / "noarch", "b", "1.0", "0", noarch="generic")
    project = tmp_path / "project"
    write_lock(
        project / "pixi.lock",
        {
            "default": {
                "linux-64": [conda_at(a, "../pkgs/linux-64/a-1.0-0.conda"), conda_at(b, b.path.as_uri())]
            }
        },
        [],
    )
    out = tmp_path / "out.tar"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out)]) == 0
    names = [m.name for m in _members(out)]
    assert "channel/linux-64/a-1.0-0.conda" in names and "channel/noarch/b-1.0-0.conda" in names


def test_retries_transient_failures(
    tmp_path: Path, served_channel: str, channel: Channel, http_server: HttpServer
) -> None:
    project = _project(tmp_path, served_channel, [channel.packages["hello-data"]])
    http_server.fail("/channel/noarch/hello-data-1.0-0.tar.bz2", 503, times=2)
    assert pack_main([str(project), "-p", "linux-64", "-o", str(tmp_path / "x.tar")]) == 0
    assert len(http_server.requests) == 3


def test_mirror_and_auth_from_config(tmp_path: Path, http_server: HttpServer, channel: Channel) -> None:
    write_channel(http_server.root / "mirror", list(channel.packages.values()))
    project = _project(tmp_path, "https://conda.example.invalid/forge", [channel.packages["hello"]])
    config = tmp_path / "config.toml"
    config.write_text(
        f'[mirrors]\n"https://conda.example.invalid/forge" = ["{http_server.url}/mirror"]\n'
        "[concurrency]\ndownloads = 2\n"
    )
    http_server.require_auth("user", "secret")
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"127.0.0.1": {"BasicHTTP": {"username": "user", "password": "secret"}}}))
    out = tmp_path / "x.tar"
    assert (
        pack_main(
            [
                str(project),
                "-p",
                "linux-64",
                "-o",
                str(out),
                "--config",
                str(config),
                "--auth-file",
                str(auth),
            ]
        )
        == 0
    )
    assert http_server.requests == ["/mirror/linux-64/hello-1.2.3-h0_0.conda"]


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert pack_main(argv) == 1
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in err, err
    return last


def test_errors_leave_no_output(
    tmp_path: Path,
    served_channel: str,
    channel: Channel,
    http_server: HttpServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out" / "environment.tar"
    out.parent.mkdir()
    assert "manifest not found" in _fails([str(tmp_path / "missing.toml"), "-o", str(out)], capsys)
    (tmp_path / "empty").mkdir()
    assert "lockfile not found" in _fails([str(tmp_path / "empty"), "-o", str(out)], capsys)
    project = _project(tmp_path, served_channel, list(channel.packages.values()))
    assert "environment not found in lockfile: prod" in _fails(
        [str(project), "-e", "prod", "-o", str(out)], capsys
    )
    err = _fails([str(project), "-p", "win-64", "-o", str(out)], capsys)
    assert "platform not found in lockfile: win-64 (available for default: linux-64)" in err
    (project / "pixi.lock").write_text("version: 6\nenvironments: {default: [\n")
    assert "could not parse" in _fails([str(project), "-o", str(out)], capsys)

    project = _project(tmp_path, served_channel, list(channel.packages.values()))
    http_server.fail("/channel/linux-64/hello-1.2.3-h0_0.conda", 404)
    err = _fails([str(project), "-p", "linux-64", "-o", str(out)], capsys)
    assert "could not download hello-1.2.3-h0_0 from http://127.0.0.1" in err and "404" in err
    assert list(out.parent.iterdir()) == []


def test_hash_mismatch_names_package_url_and_expected_hash_only(
    tmp_path: Path,
    served_channel: str,
    channel: Channel,
    http_server: HttpServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = _project(tmp_path, served_channel, [channel.packages["hello-data"]])
    served = http_server.root / "channel" / "noarch" / "hello-data-1.0-0.tar.bz2"
    served.write_bytes(served.read_bytes() + b"tampered")
    got = hashlib.sha256(served.read_bytes()).hexdigest()
    out = tmp_path / "out.tar"
    err = _fails([str(project), "-p", "linux-64", "-o", str(out)], capsys)
    assert "hello-data-1.0-0" in err and "sha256 mismatch" in err
    assert channel.packages["hello-data"].sha256 in err and got not in err  # what arrived is not printed
    assert "http://127.0.0.1" in err
    assert not out.exists() and not list(tmp_path.glob(".*part"))


def test_source_and_sdist_entries_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "pixi.lock").write_text(
        yaml.safe_dump(
            {
                "version": 6,
                "environments": {
                    "default": {
                        "channels": [],
                        "packages": {"linux-64": [{"pypi": "https://x.invalid/foo-1.0.tar.gz"}]},
                    }
                },
                "packages": [{"pypi": "https://x.invalid/foo-1.0.tar.gz", "name": "foo", "version": "1.0"}],
            }
        )
    )
    err = _fails([str(project), "-p", "linux-64", "-o", str(tmp_path / "o.tar")], capsys)
    assert "package foo is not a wheel file, we currently require all dependencies to be wheels." in err
    assert (
        pack_main([str(project), "-p", "linux-64", "-o", str(tmp_path / "o.tar"), "--ignore-pypi-non-wheel"])
        == 0
    )
    assert "skipping foo" in capsys.readouterr().err

    (project / "pixi.lock").write_text(
        yaml.safe_dump(
            {
                "version": 7,
                "platforms": [{"name": "linux-64"}],
                "environments": {
                    "default": {"channels": [], "packages": {"linux-64": [{"conda_source": "pkg[abc] @ ."}]}}
                },
                "packages": [{"conda_source": "pkg[abc] @ .", "name": "pkg"}],
            }
        )
    )
    err = _fails([str(project), "-p", "linux-64", "-o", str(tmp_path / "o.tar")], capsys)
    assert "conda source packages" in err and "--inject" in err


def test_output_problems_are_found_before_downloading(
    tmp_path: Path,
    served_channel: str,
    channel: Channel,
    http_server: HttpServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = _project(tmp_path, served_channel, list(channel.packages.values()))
    err = _fails(
        [str(project), "-p", "linux-64", "--create-executable", "-o", str(tmp_path / "e.sh")], capsys
    )
    assert "--pixi-unpack-source" in err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("mine")
    err = _fails([str(project), "-p", "linux-64", "--directory-only", "-o", str(tmp_path / "taken")], capsys)
    assert "already exists and is not empty" in err
    assert http_server.requests == []
    assert (tmp_path / "taken" / "file").read_text() == "mine"


def test_a_second_pack_replaces_the_file_and_says_so(
    tmp_path: Path, served_channel: str, channel: Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path, served_channel, list(channel.packages.values()))
    out = tmp_path / "environment.tar"
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out)]) == 0
    assert "replacing" not in capsys.readouterr().err
    out.write_bytes(b"an older pack")
    assert pack_main([str(project), "-p", "linux-64", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"created pack at {out} (" in err and "), replacing the file that was there" in err
    assert "pixi-pack.json" in [m.name for m in _members(out)]


def test_a_folder_is_never_replaced_by_a_pack_file(
    tmp_path: Path, served_channel: str, channel: Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(tmp_path, served_channel, list(channel.packages.values()))
    (tmp_path / "environment.tar").mkdir()
    err = _fails([str(project), "-p", "linux-64", "-o", str(tmp_path / "environment.tar")], capsys)
    assert "is a folder: pixi-pack replaces files, never folders" in err
