"""Conda packages added with ``--inject``: read their metadata, and check they fit the environment.

The check is rattler's ``PackageRecord::validate`` over the environment plus the injected packages:
every dependency of every package is matched by some package of the set (virtual packages such as
``__glibc`` are skipped, the system provides them), and no package of the set violates another's
``constrains``. On top of that, an injected package may not replace a package of the environment, nor
be built for another platform.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pixi_pack.errors import ArchiveError, MissingMemberError, PixiPackError
from pixi_pack.formats.matchspec import MatchSpec, parse_spec
from pixi_pack.formats.package import read_info
from pixi_pack.io.hashing import hash_file
from pixi_pack.models import CondaPackage
from pixi_pack.platforms import subdir_of

INDEX_JSON = "info/index.json"


def load_injected(path: Path) -> CondaPackage:
    """The package at ``path`` (``.conda`` or ``.tar.bz2``) with its repodata record, hashes included."""
    if not path.is_file():
        msg = f"cannot inject {path}: no such file"
        raise PixiPackError(msg)
    index = _read_index(path)
    subdir = _subdir(index, path)
    digests = hash_file(path, md5=True)
    # As rattler writes repodata: no nulls, and no fn/url (the channel gives those).
    record = {key: value for key, value in index.items() if value is not None and key not in ("fn", "url")}
    record.setdefault("depends", [])
    record.update(subdir=subdir, sha256=digests.sha256, md5=digests.md5, size=digests.size)
    return CondaPackage(str(path.resolve()), path.name, subdir, record)


def _read_index(path: Path) -> dict[str, Any]:
    if not path.name.endswith((".conda", ".tar.bz2")):
        msg = f"cannot inject {path}: not a conda package (expected a .conda or .tar.bz2 file)"
        raise PixiPackError(msg)
    try:
        with open(path, "rb") as stream:
            info = read_info(stream, path.name)
        index = json.loads(info.files["index.json"])
    except MissingMemberError as exc:
        msg = f"cannot inject {path}: the package has no {exc.member}"
        raise PixiPackError(msg) from exc
    except (ArchiveError, OSError, ValueError, RecursionError) as exc:
        msg = f"cannot inject {path}: not a readable conda package: {exc}"
        raise PixiPackError(msg) from exc
    _check_index(index, path)
    return dict(index)


def _check_index(index: Any, path: Path) -> None:
    if not isinstance(index, dict):
        msg = f"cannot inject {path}: {INDEX_JSON} is not a JSON object"
        raise PixiPackError(msg)
    for key in ("name", "version", "build"):
        if not isinstance(index.get(key), str) or not index[key]:
            msg = f"cannot inject {path}: {INDEX_JSON} has no {key}"
            raise PixiPackError(msg)
    for key in ("depends", "constrains"):
        value = index.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            msg = f"cannot inject {path}: {key} in {INDEX_JSON} is not a list of strings"
            raise PixiPackError(msg)


def _subdir(index: Mapping[str, Any], path: Path) -> str:
    """``subdir`` of index.json; old packages only have ``platform`` and ``arch`` (rattler derives it too)."""
    subdir, platform, arch = index.get("subdir"), index.get("platform"), index.get("arch")
    if subdir:
        return str(subdir)
    if platform and arch:
        return subdir_of(str(platform), str(arch))
    if index.get("noarch"):
        return "noarch"
    msg = f"cannot inject {path}: {INDEX_JSON} has no subdir, nor platform and arch"
    raise PixiPackError(msg)


def check_compatible(
    packages: Sequence[CondaPackage], injected: Sequence[CondaPackage], platform: str
) -> None:
    """Refuse ``injected`` packages that do not fit the environment ``packages`` packed for ``platform``.

    Every problem found is listed in the one :class:`PixiPackError` raised.
    """
    problems = [*_misplaced(packages, injected, platform)]
    if not problems:
        problems = _unsatisfied(packages, injected)
    if len(problems) == 1:
        raise PixiPackError(problems[0])
    if problems:
        msg = "the injected packages do not fit the environment:\n" + "\n".join(f"  - {p}" for p in problems)
        raise PixiPackError(msg)


def _misplaced(
    packages: Sequence[CondaPackage], injected: Sequence[CondaPackage], platform: str
) -> Iterator[str]:
    """Injected packages for another platform, or whose name is taken."""
    taken = {p.name.lower(): f"the environment already has {p.dist_name}" for p in packages}
    for package in injected:
        if package.subdir not in ("noarch", platform):
            yield (
                f"cannot inject {package.file_name}: it is built for {package.subdir}, "
                f"but the environment is for {platform}"
            )
        name = package.name.lower()
        if name in taken:
            yield f"cannot inject {package.file_name}: {taken[name]}"
        taken.setdefault(name, f"{package.dist_name} is injected twice")


def _unsatisfied(packages: Sequence[CondaPackage], injected: Sequence[CondaPackage]) -> list[str]:
    """rattler's validate over the union: unmet dependencies and violated constraints, injected first."""
    union = [*injected, *packages]
    by_name: dict[str, list[CondaPackage]] = {}
    for package in union:
        by_name.setdefault(package.name.lower(), []).append(package)
    is_injected = {id(p) for p in injected}
    problems = []
    for package in union:
        who = f"{'injected' if id(package) in is_injected else 'environment'} package {package.dist_name}"
        for dependency in _specs(package, "depends"):
            candidates = by_name.get(dependency.name, [])
            if not any(_matches(dependency, c) for c in candidates):
                problems.append(f"{who} depends on {dependency}{_found(dependency, candidates)}")
        for constraint in _specs(package, "constrains"):
            found = by_name.get(constraint.name)
            if found and not _matches(constraint, found[0]):
                violator = found[0]
                if id(violator) in is_injected and id(package) not in is_injected:
                    problems.append(
                        f"injected package {violator.dist_name} conflicts with {who}, "
                        f"which constrains {constraint}"
                    )
                else:
                    problems.append(f"{who} constrains {constraint}{_found(constraint, found)}")
    return problems


def _specs(package: CondaPackage, key: str) -> Iterator[MatchSpec]:
    for text in package.record.get(key) or ():
        if key == "depends" and str(text).startswith("__"):
            continue  # a virtual package: the system provides it, not the environment
        try:
            yield parse_spec(str(text))
        except PixiPackError as exc:
            msg = f"cannot check {package.dist_name}: {exc}"
            raise PixiPackError(msg) from None


def _matches(spec: MatchSpec, package: CondaPackage) -> bool:
    try:
        return spec.matches(package.record)
    except PixiPackError as exc:
        msg = f"cannot check {package.dist_name} against {spec}: {exc}"
        raise PixiPackError(msg) from None


def _found(spec: MatchSpec, candidates: Sequence[CondaPackage]) -> str:
    if not candidates:
        return ", which is not satisfied by any package in the environment"
    package = candidates[0]
    shown = f"{package.name} {package.version}"
    if spec.build is not None or spec.build_number is not None:
        shown += f" (build {package.build})"
    return f" but the environment has {shown}"
