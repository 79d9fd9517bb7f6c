"""Where every file of every package goes, decided before anything is written.

Packages are put in dependency order (:func:`sort_topologically`, as rattler sorts them); noarch python
paths are mapped into the environment's site-packages and scripts folder, entry points added; and a path
that several packages hold goes to the one last in dependency order, the others' copies to
``__clobbers__/<name>/<path>`` (:func:`resolve_clobbers`: the final layout rattler's clobber registry
reaches). The plan depends on nothing but the packages, so it is the same on every run.

Read from rattler's ``install/python.rs``, ``install/entry_point.rs``, ``install/clobber_registry.rs``,
its path resolver (``crates/path_resolver``) and rattler_conda_types' ``repo_data/topological_sort.rs``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from pixi_pack.errors import InstallError
from pixi_pack.formats.package_info import EntryPoint, Package
from pixi_pack.install.entrypoints import has_launchers
from pixi_pack.platforms import PythonInfo, is_windows

CLOBBERS_DIR = "__clobbers__"


@dataclass(frozen=True)
class PackagePlan:
    """Where one package's files go; made by :func:`plan_install`, never changed after."""

    package: Package
    final: Mapping[str, str]
    """Package path -> path in the prefix (noarch python paths mapped)."""
    installed: Mapping[str, str]
    """Path in the prefix -> where this package's copy is written (itself, or under ``__clobbers__``)."""
    shadowed: frozenset[str]
    """Package paths not written because an entry point of the same package takes their place."""
    scripts: Sequence[tuple[EntryPoint, Sequence[str]]]
    """Each entry point and the scripts written for it, relative to the prefix (noarch python only)."""


@dataclass(frozen=True)
class InstallPlan:
    """Every package's :class:`PackagePlan`, in dependency order, and the environment's python."""

    packages: Sequence[PackagePlan]
    python: PythonInfo | None
    platform: str


def plan_install(
    packages: Sequence[Package], platform: str, *, python: PythonInfo | None = None
) -> InstallPlan:
    """Decide where every file of ``packages`` goes in a ``platform`` prefix, before anything is written.

    ``python`` is the environment's python where it is not among ``packages`` (an update that keeps it).
    """
    python = python or environment_python(packages, platform)
    by_name = _by_unique_name(packages)
    order = sort_topologically(
        sorted(by_name),
        {n: p.depends for n, p in by_name.items()},
        {n: p.index.get("noarch") not in (None, False) for n, p in by_name.items()},
    )
    layouts = {name: _layout(by_name[name], python, platform) for name in order}
    owned = {name: layout.owned for name, layout in layouts.items()}
    live = resolve_clobbers(order, owned)
    plans = []
    for name in order:
        layout = layouts[name]
        installed = {path: place(name, path, live) for path in layout.owned}
        plans.append(
            PackagePlan(
                package=by_name[name],
                final=MappingProxyType(layout.final),
                installed=MappingProxyType(installed),
                shadowed=layout.shadowed,
                scripts=layout.scripts,
            )
        )
    return InstallPlan(packages=tuple(plans), python=python, platform=platform)


def place(name: str, path: str, live: set[tuple[str, str]]) -> str:
    """Where package ``name``'s copy of ``path`` goes, given :func:`resolve_clobbers`' ``live`` pairs."""
    return path if (name, path) in live else f"{CLOBBERS_DIR}/{name}/{path}"


def _by_unique_name(packages: Sequence[Package]) -> dict[str, Package]:
    by_name = {p.name: p for p in packages}
    if len(by_name) != len(packages):
        names = sorted(p.name for p in packages)
        twice = next(a for a, b in zip(names, names[1:]) if a == b)
        msg = f"cannot install two packages named {twice}"
        raise InstallError(msg)
    return by_name


@dataclass(frozen=True)
class _Layout:
    final: dict[str, str]
    scripts: tuple[tuple[EntryPoint, tuple[str, ...]], ...]
    shadowed: frozenset[str]
    owned: list[str]
    """The prefix paths the package writes, in order."""


def _layout(package: Package, python: PythonInfo | None, platform: str) -> _Layout:
    final = _final_paths(package, python)
    scripts = _entry_point_scripts(package, python, platform)
    targets = {path for _, paths in scripts for path in paths}
    # rattler writes entry points after the files, so an entry point replaces a file at its path.
    shadowed = frozenset(e.path for e in package.entries if final[e.path] in targets)
    files = [final[e.path] for e in package.entries if e.path_type != "directory"]
    owned = [*files, *(path for _, paths in scripts for path in paths)]
    return _Layout(final, scripts, shadowed, list(dict.fromkeys(owned)))


# --- noarch python ------------------------------------------------------------------------------------


def environment_python(packages: Iterable[Package], platform: str) -> PythonInfo | None:
    """The layout of the environment's python, if a package is python."""
    python = next((p for p in packages if p.name == "python"), None)
    if python is None:
        return None
    record = {**python.index, **python.source.record}
    info = PythonInfo.from_record(record, platform)
    if info is None:
        version = str(record.get("version", ""))
        msg = f"cannot install noarch python packages: the python version {version!r} has no X.Y form"
        raise InstallError(msg)
    return info


def _final_paths(package: Package, python: PythonInfo | None) -> dict[str, str]:
    if package.noarch_python and python is None:
        msg = f"could not install {package.dist}: it is a noarch python package but the environment has no python"
        raise InstallError(msg)
    if package.noarch_python and python:
        return {entry.path: python.target_path(entry.path) for entry in package.entries}
    return {entry.path: entry.path for entry in package.entries}


def _entry_point_scripts(
    package: Package, python: PythonInfo | None, platform: str
) -> tuple[tuple[EntryPoint, tuple[str, ...]], ...]:
    if not package.noarch_python or python is None:
        return ()
    return tuple((point, tuple(entry_point_paths(point, python, platform))) for point in package.entry_points)


def entry_point_paths(point: EntryPoint, python: PythonInfo, platform: str) -> list[str]:
    """Where an entry point's script goes, relative to the prefix."""
    if is_windows(platform):
        scripts = [f"{python.bin_dir}/{point.command}-script.py"]
        return [*scripts, f"{python.bin_dir}/{point.command}.exe"] if has_launchers(platform) else scripts
    return [f"{python.bin_dir}/{point.command}"]


# --- dependency order ---------------------------------------------------------------------------------

_NAME_END = re.compile(r"[\s><=!~;\[]")


def dependency_name(spec: str) -> str:
    """The lower-cased package name a dependency string starts with, scanned as rattler's sort does.

    Unlike :func:`pixi_pack.formats.matchspec.parse_spec` it never fails, so a dependency pixi-pack cannot
    parse still orders the install (and installing needs no MatchSpec parser).
    """
    match = _NAME_END.search(spec)
    return (spec[: match.start()] if match else spec).lower()


def sort_topologically(
    names: Sequence[str], depends: Mapping[str, Sequence[str]], noarch: Mapping[str, bool]
) -> list[str]:
    """Dependencies before dependents, exactly as rattler's ``PackageRecord::sort_topologically``.

    ``depends`` maps each name to its dependency strings, ``noarch`` tells which are noarch; cycles are
    broken by dropping an edge from an arch to a noarch package where there is one.
    """
    deps = {name: [dependency_name(d) for d in depends.get(name, ())] for name in names}
    breaks = _break_cycles(_find_cycles(deps), noarch)
    order: list[str] = []
    visited: set[str] = set()
    dependencies = {d for name in names for d in deps[name] if (name, d) not in breaks}
    stack: list[tuple[bool, str]] = [(False, root) for root in sorted(set(names) - dependencies)]
    while True:
        while stack:
            install, name = stack.pop()
            if install:
                order.append(name)
                continue
            if name in visited:
                continue
            visited.add(name)
            if name not in deps:
                continue
            stack.append((True, name))
            stack.extend((False, d) for d in sorted(d for d in deps[name] if (name, d) not in breaks))
        unvisited = sorted(n for n in names if n not in visited)
        if not unvisited:
            return order
        stack.extend((False, n) for n in unvisited)


def _find_cycles(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    visited: set[str] = set()
    for start in sorted(deps):
        if start in visited:
            continue
        path: list[str] = []
        # Iterative DFS: (node, index of the next dependency to visit).
        stack: list[tuple[str, int]] = [(start, -1)]
        while stack:
            node, i = stack.pop()
            if i < 0:
                if node in path:
                    cycles.append(path[path.index(node) :])
                    continue
                if node in visited:
                    continue
                visited.add(node)
                path.append(node)
                i = 0
            children = deps.get(node, ())
            if i < len(children):
                stack.append((node, i + 1))
                stack.append((children[i], -1))
            else:
                path.pop()
    return cycles


def _break_cycles(cycles: Sequence[Sequence[str]], noarch: Mapping[str, bool]) -> set[tuple[str, str]]:
    breaks: set[tuple[str, str]] = set()
    for cycle in cycles:
        for i, first in enumerate(cycle):
            second = cycle[(i + 1) % len(cycle)]
            first_arch, second_arch = not noarch.get(first, False), not noarch.get(second, False)
            if first_arch and not second_arch:
                breaks.add((first, second))
                break
            if (not first_arch and second_arch) or i == len(cycle) - 1:
                breaks.add((second, first))
                break
    return breaks


# --- clobbers -----------------------------------------------------------------------------------------


def resolve_clobbers(order: Sequence[str], owned: Mapping[str, Sequence[str]]) -> set[tuple[str, str]]:
    """The ``(package, path)`` pairs that end up at their own path; all others go to ``__clobbers__``.

    This is the layout rattler's path resolver settles on once it re-prioritises by dependency order:
    walking down a path, the first folder or file that is a file of the highest-ranked package holding
    anything at or below it decides; that package's file stays, everything else at or below is moved.
    """
    rank = {name: i for i, name in enumerate(order)}
    exact: dict[str, set[str]] = {}
    for name in order:
        for path in owned[name]:
            exact.setdefault(path, set()).add(name)
    below: dict[str, set[str]] = {}
    for name in order:
        for path in owned[name]:
            for parent in _parents(path):
                if parent in exact:
                    below.setdefault(parent, set()).add(name)
    if not below and all(len(holders) == 1 for holders in exact.values()):
        # No path held twice and none inside another package's file: everything stays where it is.
        return {(name, path) for name in order for path in owned[name]}
    live = set()
    for name in order:
        for path in owned[name]:
            if _stays(name, path, exact, below, rank):
                live.add((name, path))
    return live


def _parents(path: str) -> Iterator[str]:
    index = path.find("/")
    while index >= 0:
        yield path[:index]
        index = path.find("/", index + 1)


def _stays(
    name: str,
    path: str,
    exact: Mapping[str, set[str]],
    below: Mapping[str, set[str]],
    rank: Mapping[str, int],
) -> bool:
    if len(exact[path]) == 1 and path not in below and not any(p in exact for p in _parents(path)):
        return True
    for node in [*_parents(path), path]:
        holders = exact.get(node)
        if not holders:
            continue
        winner = max(holders | below.get(node, set()), key=rank.__getitem__)
        if winner in holders:
            return node == path and winner == name
    return False
