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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from pixi_pack.errors import InstallError
from pixi_pack.formats.package_info import EntryPoint, Package
from pixi_pack.install.entrypoints import has_launchers
from pixi_pack.platforms import PythonInfo, is_windows

CLOBBERS_DIR = "__clobbers__"


@dataclass(frozen=True)
class PackagePlan:
    """Where one package's files go; made by :func:`plan_install`, never changed after.

    It holds no object per path: where a path goes is computed (:meth:`final`, :meth:`place`), and only
    the few copies that do not go to their own path are listed (``moved``).
    """

    package: Package
    python: PythonInfo | None
    """The environment's python for a noarch python package (its paths are mapped), else None."""
    moved: Mapping[str, str]
    """Path in the prefix -> where this package's copy goes instead (under ``__clobbers__``)."""
    shadowed: frozenset[str]
    """Package paths not written because an entry point of the same package takes their place."""
    scripts: Sequence[tuple[EntryPoint, Sequence[str]]]
    """Each entry point and the scripts written for it, relative to the prefix (noarch python only)."""

    def final(self, path: str) -> str:
        """Where the package path ``path`` lies in the prefix (noarch python paths mapped)."""
        return self.python.target_path(path) if self.python is not None else path

    def place(self, path: str) -> str:
        """Where this package's copy of the prefix path ``path`` is written: itself, or under ``__clobbers__``."""
        return self.moved.get(path, path)

    def owned(self) -> list[str]:
        """The prefix paths the package writes (files, symlinks, entry points), in order, each once."""
        return owned_paths(self.package, self.python, self.scripts)


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
    Only the packages' ``file_paths`` are read, so their ``entries`` may have been released.
    """
    python = python or environment_python(packages, platform)
    by_name = _by_unique_name(packages)
    order = sort_topologically(
        sorted(by_name),
        {n: p.depends for n, p in by_name.items()},
        {n: p.index.get("noarch") not in (None, False) for n, p in by_name.items()},
    )
    plans = {name: _plan(by_name[name], python, platform) for name in order}
    moved = moved_copies(order, {name: plan.owned for name, plan in plans.items()})
    return InstallPlan(
        packages=tuple(replace(plans[n], moved=MappingProxyType(moved.get(n, {}))) for n in order),
        python=python,
        platform=platform,
    )


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


def _plan(package: Package, python: PythonInfo | None, platform: str) -> PackagePlan:
    if package.noarch_python and python is None:
        msg = f"could not install {package.dist}: it is a noarch python package but the environment has no python"
        raise InstallError(msg)
    mapping = python if package.noarch_python else None
    scripts = _entry_point_scripts(package, python, platform)
    targets = {path for _, paths in scripts for path in paths}
    # rattler writes entry points after the files, so an entry point replaces a file at its path.
    shadowed = (
        frozenset(p for p in package.paths() if (mapping.target_path(p) if mapping else p) in targets)
        if targets
        else frozenset()
    )
    return PackagePlan(package, mapping, MappingProxyType({}), shadowed, scripts)


def owned_paths(
    package: Package, python: PythonInfo | None, scripts: Sequence[tuple[EntryPoint, Sequence[str]]]
) -> list[str]:
    """The prefix paths ``package`` writes, in order, each once: its files (mapped by ``python``, for
    noarch python), then its entry point scripts."""
    files = package.paths() if python is None else map(python.target_path, package.paths())
    return list(dict.fromkeys([*files, *(path for _, paths in scripts for path in paths)]))


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


def moved_copies(
    order: Sequence[str], owned: Mapping[str, Callable[[], Iterable[str]]]
) -> dict[str, dict[str, str]]:
    """For each package whose copy of some path does not stay at that path: path -> where it goes.

    The same answer as :func:`resolve_clobbers` and :func:`place`, without an object per path: a first
    pass keeps a hash per path (and the folders paths lie in); only the paths that may clash (held
    twice, a file where another path has a folder, or inside such a file) are then compared exactly,
    by :func:`resolve_clobbers`. ``owned[name]()`` gives the package's paths, each time it is called.
    """
    seen: set[int] = set()
    twice: set[int] = set()
    folders: set[str] = set()
    for name in order:
        paths = list(owned[name]())  # one package's at a time; the set operations loop in C
        keys = set(map(hash, paths))
        twice |= seen & keys
        seen |= keys
        for folder in {path.rpartition("/")[0] for path in paths}:
            while folder and folder not in folders:
                folders.add(folder)
                folder = folder.rpartition("/")[0]
    seen.clear()
    files_as_folders = (
        set().union(*(folders.intersection(owned[name]()) for name in order)) if folders else set()
    )
    if not twice and not files_as_folders:
        return {}

    def may_clash(path: str) -> bool:
        if hash(path) in twice or path in files_as_folders:
            return True
        return bool(files_as_folders) and any(p in files_as_folders for p in _parents(path))

    subset = {name: [p for p in owned[name]() if may_clash(p)] for name in order}
    live = resolve_clobbers(order, subset)
    moved = {name: moved_from(name, paths, live) for name, paths in subset.items()}
    return {name: places for name, places in moved.items() if places}


def moved_from(name: str, paths: Iterable[str], live: set[tuple[str, str]]) -> dict[str, str]:
    """Package ``name``'s copies among ``paths`` that :func:`resolve_clobbers` does not leave in place ->
    where they go."""
    return {path: place(name, path, live) for path in paths if (name, path) not in live}


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
