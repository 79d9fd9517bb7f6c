"""The activation script next to an unpacked environment (``activate.sh``, ``.bat``, ``.ps1``, ...).

It does what upstream pixi-unpack's script (rattler_shell's ``Activator::activation``) does: put the
environment's folders first on PATH, set ``CONDA_SHLVL=1`` and ``CONDA_PREFIX``, export the variables of
``etc/conda/env_vars.d/*.json`` (sorted by file name) and of ``conda-meta/state``, then source the
shell's scripts in ``etc/conda/activate.d`` in sorted order. Two things differ on purpose: paths are
quoted so any folder name works (rattler pastes them into double quotes), and sourcing the script twice
does not put the folders on PATH twice (for cmd.exe: PATH is left alone when ``CONDA_PREFIX`` is
already this environment).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from pixi_pack.errors import PixiPackError
from pixi_pack.formats.activation import CarriedActivation, parse_activation_json
from pixi_pack.io import tempfiles
from pixi_pack.platforms import SHELLS, default_shell, is_windows, path_entries

logger = logging.getLogger("pixi_pack")

_SAFE_SH = re.compile(r"[A-Za-z0-9_@%+=:,./-]+\Z")
_VAR_NAME = re.compile(r"[^\x00-\x1f\x7f=]+\Z")


@dataclass(frozen=True)
class Activation:
    """What activating an environment changes, independent of the shell."""

    prefix: str
    path_entries: tuple[str, ...]
    path_var: str
    path_separator: str
    env_vars: tuple[tuple[str, str], ...]
    scripts: tuple[str, ...]
    """The packages' activate.d scripts, then the manifest's (``[activation] scripts``)."""
    late_env_vars: tuple[tuple[str, str], ...] = ()
    """The manifest's ``[activation] env``, set after every script, as pixi does."""


def write_activation_script(output_dir: Path, prefix: Path, platform: str, shell: str | None) -> Path:
    """Write ``activate.<ext>`` for ``shell`` (None: the platform's default) into ``output_dir``.

    A script already there is replaced, as every file pixi-pack and pixi-unpack write is, and the log
    says so (a second environment unpacked into the same folder takes the script over).
    """
    shell = (shell or default_shell(platform)).lower()
    if shell not in SHELLS:
        msg = f"unknown shell {shell!r}: choose one of {', '.join(SHELLS)}"
        raise PixiPackError(msg)
    extension, flavour = SHELLS[shell]
    activation = collect_activation(prefix, platform, extension)
    writers = {
        "posix": posix_script,
        "fish": fish_script,
        "cmd": cmd_script,
        "powershell": powershell_script,
        "xonsh": xonsh_script,
        "nushell": nushell_script,
    }
    text = writers[flavour](activation)
    target = output_dir / f"activate.{extension}"
    replaced = target.exists() or target.is_symlink()
    try:
        with tempfiles.replacing(target) as out:
            out.write(text.encode("utf-8"))
    except OSError as exc:
        msg = f"could not write the activation script {target}: {exc}"
        raise PixiPackError(msg) from exc
    if replaced:
        logger.info("replaced the activation script that was at %s: it now activates %s", target, prefix)
    return target


def collect_activation(prefix: Path, platform: str, extension: str) -> Activation:
    """Read the environment's activation inputs (env_vars.d, conda-meta/state, activate.d)."""
    native = _native(prefix, platform)
    entries = tuple(str(native / rel) if rel else str(native) for rel in path_entries(platform))
    windows = is_windows(platform)
    scripts = tuple(
        str(native / "etc" / "conda" / "activate.d" / name)
        for name in _sorted_files(prefix / "etc" / "conda" / "activate.d")
        if name.rpartition(".")[2] == extension and "." in name
    )
    carried = _carried(prefix)
    scripts += tuple(
        str(native / CARRIED_DIR / script)
        for script in carried.scripts
        if script.rpartition(".")[2] == extension
    )
    return Activation(
        prefix=str(native),
        path_entries=entries,
        path_var="Path" if windows else "PATH",
        path_separator=";" if windows else ":",
        env_vars=tuple(collect_env_vars(prefix).items()),
        scripts=scripts,
        late_env_vars=carried.env,
    )


#: Where pixi-unpack puts the manifest's activation inside the environment.
CARRIED_DIR = "etc/pixi-pack/activation"


def _carried(prefix: Path) -> CarriedActivation:
    """The manifest's activation that pixi-unpack stored in the environment (none if it has none)."""
    path = prefix / CARRIED_DIR / "activation.json"
    if not path.is_file():
        return CarriedActivation()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"could not read {path}: {exc}"
        raise PixiPackError(msg) from exc
    return parse_activation_json(text, str(path))


def _native(prefix: Path, platform: str) -> PurePath:
    """The prefix spelled for the target: Windows paths for Windows targets, as rattler's ``join`` does."""
    if is_windows(platform) and not sys.platform.startswith("win"):
        return PureWindowsPath(str(prefix))
    if not is_windows(platform) and sys.platform.startswith("win"):
        return PurePosixPath(str(prefix).replace("\\", "/"))
    return prefix


def _sorted_files(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_file())


def collect_env_vars(prefix: Path) -> dict[str, str]:
    """Variables from ``etc/conda/env_vars.d/*.json`` (sorted) then ``conda-meta/state``, as rattler reads them."""
    env_vars: dict[str, str] = {}
    folder = prefix / "etc" / "conda" / "env_vars.d"
    for name in _sorted_files(folder):
        document = _read_json(folder / name)
        if not isinstance(document, dict):
            msg = f"{folder / name} must hold a JSON object of environment variables"
            raise PixiPackError(msg)
        _add_vars(env_vars, document, folder / name, uppercase=False)
    state = prefix / "conda-meta" / "state"
    if state.is_file():
        document = _read_json(state)
        variables = document.get("env_vars") if isinstance(document, dict) else None
        if not isinstance(variables, dict):
            msg = f"{state} must hold a JSON object with an 'env_vars' object"
            raise PixiPackError(msg)
        for key in variables:
            if key in env_vars:
                logger.warning(
                    "environment variable %s from %s overrides the one set by a package", key, state
                )
        _add_vars(env_vars, variables, state, uppercase=True)
    return env_vars


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        msg = f"could not read {path}: {exc}"
        raise PixiPackError(msg) from exc


def _add_vars(
    env_vars: dict[str, str], document: dict[str, object], source: Path, *, uppercase: bool
) -> None:
    for key, value in document.items():
        if not isinstance(value, str):
            logger.warning("environment variable %s in %s has no string value; skipped", key, source)
            continue
        if not _VAR_NAME.match(key):
            msg = f"invalid environment variable name {key!r} in {source}"
            raise PixiPackError(msg)
        env_vars[key.upper() if uppercase else key] = value


# --- POSIX shells (bash, zsh, sh) ----------------------------------------------------------------------


def sh_quote(value: str) -> str:
    """A POSIX shell word for ``value``, taken literally."""
    if value and _SAFE_SH.match(value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


def _sh_value(value: str) -> str:
    """rattler's rule: a value holding ``$`` is double-quoted so references expand; else it is literal."""
    if "$" in value:
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`")
        return f'"{escaped}"'
    return sh_quote(value)


def posix_script(activation: Activation) -> str:
    lines = []
    # Drop the entries if PATH already has them, then put them first: sourcing twice changes nothing.
    # The entry is matched through a quoted variable, never spliced into a pattern: zsh does not honour
    # quotes inside ${var%%pattern} within double quotes, and a path may hold spaces, quotes or globs.
    lines.append('_pixi_path=":${PATH:-}:"')
    for entry in activation.path_entries:
        lines += [
            f"_pixi_entry={sh_quote(entry)}",
            "while :; do",
            '    case "$_pixi_path" in',
            '    *:"$_pixi_entry":*) _pixi_path="${_pixi_path%%:"$_pixi_entry":*}:${_pixi_path#*:"$_pixi_entry":}" ;;',
            "    *) break ;;",
            "    esac",
            "done",
        ]
    lines.append('_pixi_path="${_pixi_path#:}"; _pixi_path="${_pixi_path%:}"')
    joined = sh_quote(activation.path_separator.join(activation.path_entries))
    lines.append(f'export {activation.path_var}={joined}"${{_pixi_path:+:$_pixi_path}}"')
    lines.append("unset _pixi_path _pixi_entry")
    lines.append("export CONDA_SHLVL=1")
    lines.append(f"export CONDA_PREFIX={sh_quote(activation.prefix)}")
    lines += [f"export {key}={_sh_value(value)}" for key, value in activation.env_vars]
    lines += [f". {sh_quote(script)}" for script in activation.scripts]
    lines += [f"export {key}={_sh_value(value)}" for key, value in activation.late_env_vars]
    return "\n".join(lines) + "\n"


# --- fish ------------------------------------------------------------------------------------------------


def fish_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish_script(activation: Activation) -> str:
    entries = " ".join(fish_quote(e) for e in activation.path_entries)
    lines = [
        f"set -l _pixi_entries {entries}",
        "for _pixi_entry in $_pixi_entries",
        "    while set -l _pixi_index (contains -i -- $_pixi_entry $PATH)",
        "        set -e PATH[$_pixi_index]",
        "    end",
        "end",
        "set -gx PATH $_pixi_entries $PATH",
        "set -e _pixi_entries",
        "set -gx CONDA_SHLVL 1",
        f"set -gx CONDA_PREFIX {fish_quote(activation.prefix)}",
    ]
    lines += _fish_vars(activation.env_vars)
    lines += [f"source {fish_quote(script)}" for script in activation.scripts]
    lines += _fish_vars(activation.late_env_vars)
    return "\n".join(lines) + "\n"


def _fish_vars(pairs: tuple[tuple[str, str], ...]) -> list[str]:
    lines = []
    for key, value in pairs:
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'set -gx {key} "{escaped}"')
    return lines


# --- cmd.exe ---------------------------------------------------------------------------------------------


def _bat_literal(value: str) -> str:
    """Inside a batch file ``%`` starts a variable reference; ``%%`` is a literal percent sign."""
    return value.replace("%", "%%")


def cmd_script(activation: Activation) -> str:
    prefix = _bat_literal(activation.prefix)
    entries = activation.path_separator.join(_bat_literal(e) for e in activation.path_entries)
    path_var = activation.path_var
    lines = [
        "@chcp 65001 > nul",
        f'@IF /I NOT "%CONDA_PREFIX%"=="{prefix}" SET "{path_var}={entries}{activation.path_separator}%{path_var}%"',
        '@SET "CONDA_SHLVL=1"',
        f'@SET "CONDA_PREFIX={prefix}"',
    ]
    lines += [f'@SET "{key}={value}"' for key, value in activation.env_vars]
    lines += [f'@CALL "{_bat_literal(script)}"' for script in activation.scripts]
    lines += [f'@SET "{key}={value}"' for key, value in activation.late_env_vars]
    return "\r\n".join(lines) + "\r\n"


# --- PowerShell ------------------------------------------------------------------------------------------


def ps_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def powershell_script(activation: Activation) -> str:
    entries = ", ".join(ps_quote(e) for e in activation.path_entries)
    var, separator = activation.path_var, activation.path_separator
    lines = [
        "$OutputEncoding = [System.Console]::OutputEncoding = [System.Console]::InputEncoding = "
        "[System.Text.Encoding]::UTF8",
        f"$_pixi_entries = @({entries})",
        f"$Env:{var} = (@($_pixi_entries) + @(($Env:{var} -split '{separator}') | "
        f"Where-Object {{ $_ -and ($_pixi_entries -notcontains $_) }})) -join '{separator}'",
        "Remove-Variable _pixi_entries",
        '${Env:CONDA_SHLVL} = "1"',
        f"${{Env:CONDA_PREFIX}} = {ps_quote(activation.prefix)}",
    ]
    lines += _ps_vars(activation.env_vars)
    lines += [f". {ps_quote(script)}" for script in activation.scripts]
    lines += _ps_vars(activation.late_env_vars)
    return "\n".join(lines) + "\n"


def _ps_vars(pairs: tuple[tuple[str, str], ...]) -> list[str]:
    lines = []
    for key, value in pairs:
        escaped = value.replace("`", "``").replace('"', '`"')
        lines.append(f'${{Env:{key}}} = "{escaped}"')
    return lines


# --- xonsh -----------------------------------------------------------------------------------------------


def xonsh_script(activation: Activation) -> str:
    """Python literals (``repr``) for every name and value: xonsh reads them as Python, never as code."""
    entries = ", ".join(repr(e) for e in activation.path_entries)
    var = activation.path_var
    lines = [
        f"for _pixi_entry in reversed([{entries}]):",
        f"    while _pixi_entry in ${var}:",
        f"        ${var}.remove(_pixi_entry)",
        f"    ${var}.insert(0, _pixi_entry)",
        "del _pixi_entry",
        "$CONDA_SHLVL = '1'",
        f"$CONDA_PREFIX = {activation.prefix!r}",
    ]
    lines += [f"${{{key!r}}} = {value!r}" for key, value in activation.env_vars]
    lines += [f"source @({script!r})" for script in activation.scripts]
    lines += [f"${{{key!r}}} = {value!r}" for key, value in activation.late_env_vars]
    return "\n".join(lines) + "\n"


# --- nushell ---------------------------------------------------------------------------------------------


def nu_quote(value: str) -> str:
    """A nushell string: single-quoted (no escapes at all), or double-quoted with JSON's escapes."""
    return f"'{value}'" if "'" not in value and value.isprintable() else json.dumps(value, ensure_ascii=False)


def nushell_script(activation: Activation) -> str:
    """For ``source activate.nu`` (or ``overlay use``); nushell wants literal paths to source."""
    entries = " ".join(nu_quote(e) for e in activation.path_entries)
    var = activation.path_var
    lines = [
        f"let _pixi_entries = [{entries}]",
        f"$env.{var} = ($env.{var} | split row (char esep) | where {{|p| $p not-in $_pixi_entries }}"
        " | prepend $_pixi_entries)",
        '$env.CONDA_SHLVL = "1"',
        f"$env.CONDA_PREFIX = {nu_quote(activation.prefix)}",
    ]
    lines += [f"load-env {{{nu_quote(key)}: {nu_quote(value)}}}" for key, value in activation.env_vars]
    lines += [f"source {nu_quote(script)}" for script in activation.scripts]
    lines += [f"load-env {{{nu_quote(key)}: {nu_quote(value)}}}" for key, value in activation.late_env_vars]
    return "\n".join(lines) + "\n"
