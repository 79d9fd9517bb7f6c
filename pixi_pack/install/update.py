"""Updating an environment in place to a pack's package set: a delta pack, or a full one with ``--update``.

The plan comes from ``conda-meta``: a package whose digest is the same in the environment and the pack
stays, file for file (same inodes, nothing rewritten), unless it is a noarch python package and python's
X.Y changes; every other package of the environment is removed, every other one of the pack installed.
Clobbers are settled over the new package set as a fresh install settles them, so a file that changes
hands between packages that stay is moved. New files are staged inside the environment and renamed
into place by the steps of a journal (:mod:`pixi_pack.install.journal`). The result is the environment a
fresh install of the pack would make; a file the user changed in a removed package is left, with a
warning, as conda does.
"""

from __future__ import annotations

import csv
import json
import logging
import posixpath
import shutil
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from pathlib import Path, PurePosixPath
from typing import Any

from pixi_pack.errors import ArchiveError, InstallError, PixiPackError
from pixi_pack.formats.archive import PackReader
from pixi_pack.formats.channel import environment_sha256, package_digest, parse_identity, parse_pypi_sha256
from pixi_pack.formats.listing import pack_packages, pack_records, wheel_names
from pixi_pack.formats.records import RecordError, check_name
from pixi_pack.install.activate import CARRIED_DIR, write_activation_script
from pixi_pack.install.condameta import pretty_json
from pixi_pack.install.journal import STAGING, Step, apply, identify, inside, staged_files, write_journal
from pixi_pack.install.link import install_packages
from pixi_pack.install.plan import (
    CLOBBERS_DIR,
    PackagePlan,
    moved_from,
    place,
    resolve_clobbers,
    sort_topologically,
)
from pixi_pack.io.files import read_limited
from pixi_pack.io.hashing import hash_file
from pixi_pack.io.zstd import Decompressor
from pixi_pack.models import INSTALLER_NAME, METADATA_FILE, PackageSource, UnpackOptions
from pixi_pack.platforms import PythonInfo, python_major_minor

logger = logging.getLogger("pixi_pack")

_RECORD_LIMIT = 256 << 20
_KEEP = frozenset({"conda-meta/history", "CACHEDIR.TAG"})
"""Written into every new prefix, so into the staging folder too; the environment has its own."""


def read_environment(prefix: Path) -> dict[str, dict[str, Any]]:
    """The conda-meta records of ``prefix`` by package name, each with the name of its file under ``_file``."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        where = f"{path.relative_to(prefix.parent)}"
        try:
            record = json.loads(read_limited(path, _RECORD_LIMIT))
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            name = check_name(record.get("name"), "name")
            paths = record.get("paths_data", {}).get("paths", [])
            if not isinstance(paths, list) or not all(
                isinstance(p, dict) and isinstance(p.get("_path"), str) for p in paths
            ):
                raise ValueError("paths_data.paths must be a list of objects with a _path")
        except (OSError, ValueError, RecordError, AttributeError, RecursionError) as exc:
            msg = f"cannot update the environment: {where} is not a conda-meta record pixi-unpack can read ({exc})"
            raise InstallError(msg) from exc
        if name in records:
            msg = f"cannot update the environment: two conda-meta records name {name}"
            raise InstallError(msg)
        records[name] = {**record, "_file": path.name}
    return records


def identity(installed: Mapping[str, Mapping[str, Any]]) -> str:
    """The environment's identity, as pixi-pack computes it for a pack."""
    return environment_sha256(package_digest(r) for r in installed.values())


def check_base(prefix: Path, installed: Mapping[str, Mapping[str, Any]], base: str) -> None:
    """Refuse, before anything is touched, a delta pack made against another environment."""
    actual = identity(installed)
    if actual != base:
        msg = (
            f"{prefix} is not the environment this delta pack updates: the pack applies to the environment "
            f"{base}, and {prefix} is {actual}; unpack the full pack with --update (or --force)"
        )
        raise PixiPackError(msg)


class UpdatePlan:
    """Which packages stay, go and come, decided from conda-meta and the pack's records."""

    def __init__(
        self,
        installed: Mapping[str, dict[str, Any]],
        records: Mapping[str, Mapping[str, Any]],
        sources: Mapping[str, PackageSource],
        platform: str,
    ) -> None:
        """``records``: the pack's records by name; ``sources``: the archives the pack holds, by name."""
        old_python, new_python = (
            _python_version(installed.get("python")),
            _python_version(records.get("python")),
        )
        relink = old_python != new_python
        self.installed, self.records, self.platform = installed, records, platform
        self.kept = {
            name
            for name, record in records.items()
            if name in installed
            and package_digest(installed[name]) == package_digest(record)
            and not (relink and record.get("noarch") == "python")
        }
        self.removed = sorted(set(installed) - self.kept)
        self.added = sorted(set(records) - self.kept)
        missing = [name for name in self.added if name not in sources]
        if missing:
            record = records[missing[0]]
            msg = (
                f"the pack does not hold {record.get('name')}-{record.get('version')}-{record.get('build')}, "
                "and the environment does not have it: this delta pack was made for another environment"
            )
            raise PixiPackError(msg)
        self.sources = [sources[name] for name in self.added]
        python = records.get("python")
        self.python = PythonInfo.from_record(python, platform) if python is not None else None
        self.order = sort_topologically(
            sorted(records),
            {n: [str(d) for d in r.get("depends") or ()] for n, r in records.items()},
            {n: r.get("noarch") not in (None, False) for n, r in records.items()},
        )
        self._owned: dict[str, list[str]] = {n: _final_paths(installed[n]) for n in self.kept}
        self._live: set[tuple[str, str]] | None = None

    def placements(self, plans: Sequence[PackagePlan]) -> list[dict[str, str]]:
        """Where the copies of the added packages' paths go that do not go to their own path (prefix path
        -> its copy's place), the clobbers settled over the whole new package set, as a fresh install
        settles them."""
        for plan in plans:
            self._owned[plan.package.name] = plan.owned()
        self._live = None
        live = self._settled()
        return [moved_from(p.package.name, self._owned[p.package.name], live) for p in plans]

    def _settled(self) -> set[tuple[str, str]]:
        if self._live is None:
            self._live = resolve_clobbers([n for n in self.order if n in self._owned], self._owned)
        return self._live

    def kept_moves(self) -> dict[str, dict[str, str]]:
        """For each kept package, the paths whose place changes: current ``_path`` -> new ``_path``."""
        live = self._settled()
        moves: dict[str, dict[str, str]] = {}
        for name in self.kept:
            for item in self.installed[name]["paths_data"]["paths"]:
                if item.get("path_type") == "directory":
                    continue
                wanted = place(name, _final(item), live)
                if wanted != item["_path"]:
                    moves.setdefault(name, {})[item["_path"]] = wanted
        return moves


def _python_version(record: Mapping[str, Any] | None) -> tuple[int, int] | None:
    return python_major_minor(str(record.get("version", ""))) if record is not None else None


def _final(item: Mapping[str, Any]) -> str:
    """The place in the prefix of a ``paths_data`` item (its ``_path`` may be under ``__clobbers__``)."""
    return str(item.get("original_path") or item["_path"])


def _final_paths(record: Mapping[str, Any]) -> list[str]:
    return [_final(item) for item in record["paths_data"]["paths"] if item.get("path_type") != "directory"]


def plan_steps(prefix: Path, plan: UpdatePlan, wheel_files: Sequence[str] = ()) -> list[Step]:
    """The journal's steps, once the new packages are staged: files of kept packages moved out of the
    way, files of removed packages and of the wheels pixi-unpack installed (``wheel_files``: every wheel
    is installed again) removed, kept files moved into their new places, the staged files renamed into
    place (conda-meta last), and the folders emptied by removals removed."""
    staging = prefix / STAGING
    installs = {s for s in staged_files(staging) if not s.startswith("conda-meta/") and s not in _KEEP}
    moves = plan.kept_moves()
    out: list[Step] = []
    into: list[Step] = []
    folders: set[str] = set()
    for name, changes in sorted(moves.items()):
        for current, wanted in sorted(changes.items()):
            step = Step("move", wanted, current, identify(prefix, current))
            (out if wanted.startswith(f"{CLOBBERS_DIR}/") else into).append(step)
            folders.add(str(PurePosixPath(current).parent))
        _rewrite_record(staging, plan.installed[name], changes)
    removals: list[Step] = []
    for name in plan.removed:
        record = plan.installed[name]
        for item in record["paths_data"]["paths"]:
            path = str(item["_path"])
            if item.get("path_type") == "directory":
                folders.add(path)
                continue
            folders.add(str(PurePosixPath(path).parent))
            if path in installs:
                if _changed(prefix, item):
                    logger.warning("%s: replacing %s, which was changed since it was installed", name, path)
                continue
            if _changed(prefix, item):
                logger.warning("%s: leaving %s, which was changed since it was installed", name, path)
                continue
            removals.append(Step("remove", path, inode=identify(prefix, path)))
            removals += _pycache_of(prefix, path)
        removals.append(
            Step(
                "remove",
                f"conda-meta/{record['_file']}",
                inode=identify(prefix, f"conda-meta/{record['_file']}"),
            )
        )
    for path in wheel_files:
        folders.add(str(PurePosixPath(path).parent))
        if path not in installs:
            removals.append(Step("remove", path, inode=identify(prefix, path)))
            removals += _pycache_of(prefix, path)
    staged = [s for s in staged_files(staging) if s not in _KEEP]  # with the rewritten records
    steps = [*out, *removals, *into]
    steps += [Step("install", s, s) for s in staged if s in installs]
    steps += [Step("install", s, s) for s in staged if s not in installs]
    steps += [Step("rmdir", f) for f in sorted(folders, key=lambda f: -f.count("/")) if f not in ("", ".")]
    return [s for s in steps if s.kind != "remove" or s.inode is not None]


def _rewrite_record(staging: Path, record: Mapping[str, Any], changes: Mapping[str, str]) -> None:
    """The conda-meta record of a kept package whose files moved, staged with their new places."""
    document = {k: v for k, v in record.items() if k != "_file"}
    items = []
    for item in record["paths_data"]["paths"]:
        current = item["_path"]
        if current not in changes:
            items.append(item)
            continue
        final = _final(item)
        moved: dict[str, Any] = {"_path": changes[current]}
        if changes[current] != final:
            moved["original_path"] = final
        moved.update({k: v for k, v in item.items() if k not in ("_path", "original_path")})
        items.append(moved)
    document["paths_data"] = {**record["paths_data"], "paths": items}
    document["files"] = [item["_path"] for item in items]
    target = staging / "conda-meta" / str(record["_file"])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(pretty_json(document), encoding="utf-8")


_CHECKED_TYPES = frozenset(
    {
        "hardlink",
        "unix_python_entry_point",
        "windows_python_entry_point_script",
        "windows_python_entry_point_exe",
    }
)


def _changed(prefix: Path, item: Mapping[str, Any]) -> bool:
    """Whether the file of a ``paths_data`` item is no longer what was installed (links are not checked)."""
    path = inside(prefix, str(item["_path"]))
    if item.get("path_type", "hardlink") not in _CHECKED_TYPES or path.is_symlink() or not path.is_file():
        return False
    size, expected = item.get("size_in_bytes"), item.get("sha256_in_prefix") or item.get("sha256")
    if isinstance(size, int) and path.stat().st_size != size:
        return True
    if not isinstance(expected, str):
        return False
    return hash_file(path).sha256 != expected


def _pycache_of(prefix: Path, path: str) -> list[Step]:
    """The ``__pycache__`` entries Python wrote for a removed ``.py`` file, removed with it."""
    pure = PurePosixPath(path)
    if pure.suffix != ".py":
        return []
    cache = (
        inside(prefix, str(pure.parent / "__pycache__"))
        if str(pure.parent) != "."
        else prefix / "__pycache__"
    )
    if not cache.is_dir():
        return []
    steps = []
    for entry in sorted(cache.glob(f"{pure.stem}.*.pyc")):
        relative = entry.relative_to(prefix).as_posix()
        steps.append(Step("remove", relative, inode=identify(prefix, relative)))
    if steps:
        steps.append(Step("rmdir", cache.relative_to(prefix).as_posix()))
    return steps


def stage_update(
    prefix: Path,
    plan: UpdatePlan,
    install: Callable[[Path, UpdatePlan], None],
    wheel_files: Sequence[str] = (),
) -> list[Step]:
    """Stage the added packages (``install(staging, plan)`` writes them) and return the journal's steps."""
    staging = prefix / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        install(staging, plan)
        return plan_steps(prefix, plan, wheel_files)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def summary(plan: UpdatePlan) -> str:
    """``2 packages added, 1 removed, 3 replaced, 40 kept``."""
    replaced = set(plan.removed) & set(plan.added)
    added, removed = len(plan.added) - len(replaced), len(plan.removed) - len(replaced)
    return f"{added} added, {removed} removed, {len(replaced)} replaced, {len(plan.kept)} kept"


def prepare_update(
    reader: PackReader,
    prefix: Path,
    platform: str,
    *,
    base: str | None,
    verify: Callable[[PackageSource], None] | None,
    carry: Callable[[Path], None],
    tuning: Callable[[], AbstractContextManager[object]],
    zstd: Decompressor,
    processes: bool = False,
) -> tuple[UpdatePlan, list[Step]] | None:
    """Check ``prefix`` against the pack, stage the new packages in it and return the plan and the
    journal's steps; ``None`` if the environment is the pack's already. Nothing outside the staging
    folder changes. ``carry`` writes the pack's carried activation into a folder given."""
    installed = read_environment(prefix)
    if base is not None:
        check_base(prefix, installed, base)
    wheels = wheel_names(reader)
    if wheels:
        from pixi_pack.install.wheels import verify_wheels

        verify_wheels(reader, wheels, parse_pypi_sha256(reader.read_text(METADATA_FILE)))
    old_wheels = _wheel_files(prefix, installed)
    sources, problems = pack_packages(reader)
    if problems:
        raise ArchiveError(problems[0])
    records = {str(r["name"]): r for r in pack_records(reader).values()}
    by_name = {str(s.record["name"]): s for s in sources}
    plan = UpdatePlan(installed, records, by_name, platform)
    if not plan.added and not plan.removed and not plan.kept_moves() and not wheels and not old_wheels:
        return None

    def install(staging: Path, update: UpdatePlan) -> None:
        if update.sources:
            install_packages(
                update.sources,
                staging,
                prefix,
                platform,
                verify=verify,
                tuning=tuning,
                zstd=zstd,
                python=update.python,
                placement=update.placements,
                processes=processes,
            )
        if wheels:
            from pixi_pack.install.wheels import install_wheels

            layout_dir = staging if "python" in update.added else prefix
            conda = list(update.records.values())
            install_wheels(reader, wheels, staging, prefix, platform, conda, layout_dir=layout_dir)
        carry(staging)

    steps = stage_update(prefix, plan, install, old_wheels)
    return plan, steps + _stale_activation(prefix, steps)


def _wheel_files(prefix: Path, installed: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The files of the wheels pixi-unpack installed into ``prefix``, by their RECORD, relative to it."""
    python = installed.get("python")
    info = PythonInfo.from_record(python, str(python.get("subdir") or "")) if python is not None else None
    if info is None:
        return []
    files: list[str] = []
    for dist_info in sorted((prefix / info.site_packages).glob("*.dist-info")):
        with suppress(OSError, UnicodeDecodeError):
            if (dist_info / "INSTALLER").read_text().strip() != INSTALLER_NAME:
                continue
            with open(dist_info / "RECORD", encoding="utf-8", newline="") as record:
                rows = list(csv.reader(record.read(_RECORD_LIMIT).splitlines()))
            for row in rows:
                if row and row[0]:
                    files.append(posixpath.normpath(f"{info.site_packages}/{row[0]}"))
    return files


def _stale_activation(prefix: Path, steps: Sequence[Step]) -> list[Step]:
    """The carried activation files of the old pack that the new one does not carry."""
    staged = {s.target for s in steps if s.kind == "install"}
    folder = prefix / CARRIED_DIR
    stale = []
    for path in sorted(folder.rglob("*")) if folder.is_dir() else ():
        relative = path.relative_to(prefix).as_posix()
        if not path.is_dir() and relative not in staged:
            stale.append(Step("remove", relative, inode=identify(prefix, relative)))
    return stale


def is_delta(options: UnpackOptions) -> bool:
    """Whether the pack (a file or folder, not stdin) is a delta pack, read before anything else is."""
    if options.pack is None or not options.pack.exists():
        return False
    with suppress(OSError, ArchiveError, PixiPackError):
        reader = PackReader(options.pack, options.payload_offset, options.payload_length)
        return parse_identity(reader.read_text(METADATA_FILE))[1] is not None
    return False


def commit_update(
    prefix: Path,
    prepared: tuple[UpdatePlan, list[Step]] | None,
    output_dir: Path,
    platform: str,
    shell: str | None,
) -> None:
    """Take the staged update's steps (the payload, if any, is checked by now), then write the activation script."""
    if prepared is None:
        logger.info("%s already has this pack's packages: nothing to update", prefix)
    else:
        plan, steps = prepared
        write_journal(prefix, steps)
        apply(prefix, steps)
        logger.info("updated %s: %s", prefix, summary(plan))
    write_activation_script(output_dir, prefix, platform, shell)
