"""The pixi manifest (``pixi.toml``, or ``[tool.pixi]`` of ``pyproject.toml``): read, checked, and
compared with the lock.

pixi-pack packs what ``pixi.lock`` pins, never what the manifest asks for; the manifest only tells when
the lock looks older than it (a dependency or an environment the lock does not have), so that the
user runs ``pixi lock`` before shipping a stale environment. Only the tables that matter for that are
read, each checked for its type: the dependency tables of the top level, of each
``[feature.<name>]`` and of their ``[target.<selector>]`` tables, and ``[environments]``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pixi_pack.errors import LockfileError
from pixi_pack.formats.channel import normalize_project_name
from pixi_pack.models import LockedEnvironment

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib

MANIFEST_NAMES = ("pixi.toml", "pyproject.toml")
DEFAULT_FEATURE = "default"
_CONDA_TABLE = "dependencies"
_PYPI_TABLE = "pypi-dependencies"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The name at the start of a PEP 508 requirement (``numpy>=2; python_version > '3.9'``).
_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


@dataclass(frozen=True)
class Activation:
    """An ``[activation]`` table: variables to set and scripts to run (paths relative to the project)."""

    env: tuple[tuple[str, str], ...] = ()
    scripts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Feature:
    """What one feature declares, by selector (``""`` for every platform): its dependencies and its
    activation."""

    conda: Mapping[str, frozenset[str]]
    pypi: Mapping[str, frozenset[str]]
    activation: Mapping[str, Activation] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    path: Path
    features: Mapping[str, Feature]
    """Every feature, the top level as ``default``."""
    environments: Mapping[str, tuple[str, ...]]
    """Every environment and its features in order, ``default`` among them unless it opted out."""


def find_manifest(manifest_path: Path) -> Path | None:
    """The manifest given, or the one in the project folder given; ``None`` for a folder with only a lock."""
    if not manifest_path.is_dir():
        return manifest_path
    for name in MANIFEST_NAMES:
        candidate = manifest_path / name
        if candidate.is_file():
            return candidate
    return None


def load_manifest(manifest_path: Path) -> Manifest | None:
    """Read the project's manifest; ``None`` when there is none, or a pyproject.toml without ``[tool.pixi]``."""
    path = find_manifest(manifest_path)
    if path is None:
        return None
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        msg = f"could not read manifest {path}: {exc.strerror or exc}"
        raise LockfileError(msg) from exc
    except UnicodeDecodeError as exc:
        msg = f"could not parse {path}: not UTF-8 ({exc.reason} at byte {exc.start})"
        raise LockfileError(msg) from exc
    return parse_manifest(text, path)


def parse_manifest(text: str, path: Path) -> Manifest | None:
    """The manifest in ``text``; ``path`` names it in errors and tells pyproject.toml from pixi.toml."""
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        msg = f"could not parse {path}: {exc} (is it a valid TOML file?)"
        raise LockfileError(msg) from exc
    return manifest_from(data, path)


def manifest_from(data: dict[str, Any], path: Path) -> Manifest | None:
    """The manifest in a parsed TOML document, each table checked for its type."""
    reader = _Reader(path)
    # pyproject.toml: [project] dependencies are the default feature's PyPI dependencies, and each
    # extra of [project.optional-dependencies] those of the feature of its name.
    extras: dict[str, frozenset[str]] = {}
    prefix = ""
    if path.name == "pyproject.toml":
        tool = reader.table(data.get("tool", {}), "tool")
        if "pixi" not in tool:
            return None
        project = reader.table(data.get("project", {}), "project")
        field = "project.dependencies"
        extras[DEFAULT_FEATURE] = _requirement_names(reader, project.get("dependencies", []), field)
        field = "project.optional-dependencies"
        for name, requirements in reader.table(project.get("optional-dependencies", {}), field).items():
            extras[name] = _requirement_names(reader, requirements, f"{field}.{name}")
        data = reader.table(tool["pixi"], "tool.pixi")
        prefix = "tool.pixi."
    tables = {DEFAULT_FEATURE: (data, prefix)}
    for name, table in reader.table(data.get("feature", {}), f"{prefix}feature").items():
        tables[name] = (reader.table(table, f"{prefix}feature.{name}"), f"{prefix}feature.{name}.")
    features = {
        name: reader.feature(*tables.get(name, ({}, "")), extras.get(name, frozenset()))
        for name in {**tables, **extras}
    }
    environments: dict[str, tuple[str, ...]] = {DEFAULT_FEATURE: (DEFAULT_FEATURE,)}
    for name, spec in reader.table(data.get("environments", {}), f"{prefix}environments").items():
        environments[name] = reader.environment(spec, f"{prefix}environments.{name}")
    return Manifest(path, features, environments)


def _requirement_names(reader: _Reader, requirements: Any, field: str) -> frozenset[str]:
    """The project names of an array of PEP 508 requirement strings."""
    names = set()
    for index, requirement in enumerate(reader.array(requirements, field)):
        match = _REQUIREMENT_NAME.match(requirement) if isinstance(requirement, str) else None
        if match is None:
            raise reader.error(f"{field}[{index}]", "must be a PEP 508 requirement string")
        names.add(match.group(1))
    return frozenset(names)


class _Reader:
    """Type checks on the manifest's tables; a wrong type is an error naming the file and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, field: str, problem: str) -> LockfileError:
        return LockfileError(f"invalid {self.path.name} ({self.path}): {field} {problem}")

    def table(self, value: Any, field: str) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        raise self.error(field, "must be a table")

    def array(self, value: Any, field: str) -> list[Any]:
        if isinstance(value, list):
            return value
        raise self.error(field, "must be an array")

    def names(self, value: Any, field: str) -> frozenset[str]:
        return frozenset(self.table(value, field))

    def feature(self, table: Mapping[str, Any], prefix: str, pypi_extra: frozenset[str]) -> Feature:
        conda = {"": self.names(table.get(_CONDA_TABLE, {}), f"{prefix}{_CONDA_TABLE}")}
        pypi = {"": self.names(table.get(_PYPI_TABLE, {}), f"{prefix}{_PYPI_TABLE}") | pypi_extra}
        activation = {"": self.activation(table.get("activation", {}), f"{prefix}activation")}
        for selector, target in self.table(table.get("target", {}), f"{prefix}target").items():
            where = f"{prefix}target.{selector}"
            target = self.table(target, where)
            conda[selector] = self.names(target.get(_CONDA_TABLE, {}), f"{where}.{_CONDA_TABLE}")
            pypi[selector] = self.names(target.get(_PYPI_TABLE, {}), f"{where}.{_PYPI_TABLE}")
            activation[selector] = self.activation(target.get("activation", {}), f"{where}.activation")
        return Feature(conda, pypi, activation)

    def activation(self, value: Any, field: str) -> Activation:
        """``{env = {NAME = "value"}, scripts = ["path", ...]}``."""
        table = self.table(value, field)
        env = self.table(table.get("env", {}), f"{field}.env")
        if not all(isinstance(v, str) and _ENV_NAME.fullmatch(k) for k, v in env.items()):
            raise self.error(f"{field}.env", "must map variable names to strings")
        scripts = self.array(table.get("scripts", []), f"{field}.scripts")
        if not all(isinstance(script, str) and script for script in scripts):
            raise self.error(f"{field}.scripts", "must list script paths")
        return Activation(tuple(env.items()), tuple(scripts))

    def environment(self, spec: Any, field: str) -> tuple[str, ...]:
        """``["a", "b"]`` or ``{features = [...], no-default-feature = true, solve-group = "..."}``."""
        if isinstance(spec, dict):
            features = self.array(spec.get("features", []), f"{field}.features")
            opted_out = spec.get("no-default-feature", False)
            if not isinstance(opted_out, bool):
                raise self.error(f"{field}.no-default-feature", "must be true or false")
        else:
            features, opted_out = self.array(spec, field), False
        if not all(isinstance(f, str) for f in features):
            raise self.error(field, "must list feature names")
        return tuple(features) if opted_out else (DEFAULT_FEATURE, *features)


def selector_matches(selector: str, subdir: str) -> bool:
    """Whether a ``[target.<selector>]`` table applies to ``subdir`` (``linux-64``, ``unix``, ``win``...)."""
    family = subdir.split("-", 1)[0]
    if selector in ("", subdir, family):
        return True
    return selector == "unix" and family in ("linux", "osx", "emscripten", "wasi")


@dataclass(frozen=True)
class Unlocked:
    """What the manifest declares for an environment and platform that the lock does not have."""

    conda: tuple[str, ...]
    pypi: tuple[str, ...]


def unlocked(manifest: Manifest, env: LockedEnvironment, subdir: str) -> Unlocked:
    """The dependencies of ``env`` in the manifest with no package of that name in the lock."""
    features = [
        manifest.features[f] for f in manifest.environments.get(env.name, ()) if f in manifest.features
    ]
    locked_conda = {p.name for p in env.conda_packages} | set(env.source_packages)
    locked_pypi = {normalize_project_name(p.name) for p in env.pypi_packages}

    def declared(tables: Iterator[Mapping[str, frozenset[str]]]) -> set[str]:
        return {
            n for table in tables for s, names in table.items() if selector_matches(s, subdir) for n in names
        }

    conda = declared(f.conda for f in features) - locked_conda
    pypi = {n for n in declared(f.pypi for f in features) if normalize_project_name(n) not in locked_pypi}
    return Unlocked(tuple(sorted(conda)), tuple(sorted(pypi)))


def activation_of(manifest: Manifest, environment: str, subdir: str) -> Activation:
    """The activation of ``environment`` packed for ``subdir``: its features' tables in the environment's
    order, each feature's own table before those of its matching ``[target.<selector>]``; scripts in
    that order, a later variable replacing an earlier one of the same name."""
    env: dict[str, str] = {}
    scripts: list[str] = []
    for name in manifest.environments.get(environment, ()):
        feature = manifest.features.get(name)
        if feature is None:
            continue
        for selector, activation in feature.activation.items():
            if selector_matches(selector, subdir):
                env.update(activation.env)
                scripts += [s for s in activation.scripts if s not in scripts]
    return Activation(tuple(env.items()), tuple(scripts))
