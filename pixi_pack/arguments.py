"""The grammar of ``pixi-pack`` and ``pixi-unpack``: their arguments, defaults and help, upstream's names.

Only parsers are built here; :mod:`pixi_pack.cli` runs them and turns their results into the library's
options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pixi_pack import __version__
from pixi_pack.models import DEFAULT_ENV_NAME, DEFAULT_OUTPUT_FILE
from pixi_pack.platforms import SHELLS, current_subdir, default_shell


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more output (repeatable)")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less output (repeatable)")
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {__version__}")


def build_pack_parser(prog: str = "pixi-pack") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Pack a pixi environment from its lockfile into one archive."
    )
    parser.add_argument(
        "manifest_path",
        nargs="?",
        type=Path,
        metavar="MANIFEST",
        default=None,
        help="pixi.toml, pyproject.toml or the project folder; pixi.lock is read beside it (default: .)",
    )
    parser.add_argument(
        "-e",
        "--environment",
        default="default",
        metavar="NAME",
        help="environment to pack (default: default)",
    )
    parser.add_argument(
        "-p",
        "--platform",
        default=None,
        metavar="PLATFORM",
        help=f"platform to pack: a conda subdir or a platform named in the lockfile (default: {current_subdir()})",
    )
    parser.add_argument(
        "-o",
        "--output-file",
        default=None,
        metavar="FILE",
        help="where to write the pack, '-' for stdout (default: ./environment.tar, "
        "./environment.sh|.ps1 with --create-executable, ./environment with --directory-only)",
    )
    parser.add_argument(
        "--auth-file", type=Path, default=None, metavar="FILE", help="rattler authentication file (JSON)"
    )
    parser.add_argument(
        "--use-cache", type=Path, default=None, metavar="DIR", help="cache downloaded packages in this folder"
    )
    parser.add_argument(
        "-i",
        "--inject",
        type=Path,
        action="append",
        default=[],
        metavar="PACKAGE",
        help="add a conda package (.conda, .tar.bz2) or a wheel to the pack; one per flag, repeatable",
    )
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        metavar="BASE",
        help="write a delta pack: only the conda packages that BASE (an earlier pack, or its pixi-pack.json) "
        "lacks; pixi-unpack applies it to the environment unpacked from BASE",
    )
    parser.add_argument(
        "--ignore-pypi-non-wheel",
        action="store_true",
        help="skip PyPI source distributions instead of failing",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--create-executable", action="store_true", help="write a self-extracting environment.sh / .ps1"
    )
    mode.add_argument("--directory-only", action="store_true", help="write the pack as a folder, not a tar")
    parser.add_argument(
        "--pixi-unpack-source",
        default=None,
        metavar="FILE_OR_URL",
        help="path or URL of the pixi-pack .pyz to embed with --create-executable (URL may end in #sha256=<hex>)",
    )
    parser.add_argument(
        "--from-prefix",
        type=Path,
        default=None,
        metavar="PATH",
        help="pack the conda environment installed at PATH (its conda-meta records) instead of a lockfile",
    )
    parser.add_argument(
        "--pkgs-dir",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="with --from-prefix: a folder of package archives to look in first (repeatable); then "
        "$CONDA_PKGS_DIRS, <root>/pkgs and ~/.conda/pkgs, then each record's URL",
    )
    parser.add_argument(
        "--sbom",
        metavar="FILE",
        default=None,
        help="also write a CycloneDX 1.6 JSON SBOM of what was packed ('-' for stdout, with -o FILE)",
    )
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="pixi config file (mirrors, s3, concurrency)",
    )
    _add_verbosity(parser)
    return parser


def build_unpack_parser(prog: str = "pixi-unpack") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Unpack an environment created by pixi-pack.")
    parser.add_argument(
        "pack_file",
        nargs="?",
        metavar="PACK",
        default=DEFAULT_OUTPUT_FILE,
        help="the pack: a tar, a folder, or '-' for stdin (default: ./environment.tar)",
    )
    parser.add_argument(
        "-o",
        "--output-directory",
        type=Path,
        default=Path.cwd(),
        metavar="DIR",
        help="where to create the environment folder and the activation script (default: .)",
    )
    parser.add_argument(
        "-e",
        "--env-name",
        default=DEFAULT_ENV_NAME,
        metavar="NAME",
        help=f"name of the environment folder (default: {DEFAULT_ENV_NAME})",
    )
    parser.add_argument(
        "-s",
        "--shell",
        choices=sorted(SHELLS),
        default=None,
        metavar="SHELL",
        help=f"shell of the activation script: {', '.join(sorted(SHELLS))} "
        f"(default: {default_shell(current_subdir())} here: bash on Unix, cmd on Windows)",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="update an existing environment in place to the pack's packages (a delta pack always does)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing environment folder with a fresh install of the pack, once it is complete",
    )
    parser.add_argument(
        "--ignore-platform",
        action="store_true",
        help="unpack a pack made for another platform (e.g. to build an image for it), with a warning",
    )
    parser.add_argument(
        "--ignore-virtual-packages",
        action="store_true",
        help="do not check that this host has the __glibc, __osx, ... versions the packages need",
    )
    review = parser.add_argument_group("looking into a pack without installing it (nothing is written)")
    review.add_argument(
        "--list",
        action="store_true",
        help="print the packages and wheels, largest first, with their licenses",
    )
    review.add_argument("--json", action="store_true", help="with --list: a JSON array, for scripts")
    review.add_argument(
        "--verify-only",
        action="store_true",
        help="run every check unpacking makes, and check every file inside every package; report all problems",
    )
    review.add_argument(
        "--sbom",
        metavar="FILE",
        default=None,
        help="write a CycloneDX 1.6 JSON SBOM of the pack ('-' for stdout)",
    )
    # Used by the self-extracting stub, which passes its own file and where the tar sits in it.
    parser.add_argument("--payload-offset", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--payload-length", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--payload-sha256", default=None, help=argparse.SUPPRESS)
    _add_verbosity(parser)
    return parser


COMPLETION_SHELLS = ("bash", "zsh", "fish", "powershell")


def completion_parser(prog: str) -> argparse.ArgumentParser:
    """``<prog> completion -s SHELL``: print a completion script, as upstream's clap ``completion``."""
    parser = argparse.ArgumentParser(
        prog=f"{prog} completion", description=f"Print a script that completes {prog}'s options."
    )
    parser.add_argument(
        "-s",
        "--shell",
        required=True,
        choices=COMPLETION_SHELLS,
        metavar="SHELL",
        help=", ".join(COMPLETION_SHELLS),
    )
    return parser


def _options(parser: argparse.ArgumentParser) -> list[tuple[list[str], str, list[str] | None, bool]]:
    """Each visible option: its flags, its help, its choices, and whether it takes a value."""
    found = []
    for action in parser._actions:  # argparse has no public listing of its actions
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        choices = [str(c) for c in action.choices] if action.choices else None
        takes_value = action.nargs != 0
        found.append((list(action.option_strings), str(action.help or ""), choices, takes_value))
    return found


def completion_script(parser: argparse.ArgumentParser, shell: str, command: str) -> str:
    """A completion script of ``parser``'s options for ``command`` in ``shell``'s language."""
    options = _options(parser)
    function = "_" + "".join(c if c.isalnum() else "_" for c in command)
    if shell in ("bash", "zsh"):
        words = " ".join(flag for flags, _, _, _ in options for flag in flags)
        cases = [
            f"        {'|'.join(flags)}) COMPREPLY=($(compgen -W '{' '.join(choices)}' -- \"$cur\")); return ;;"
            for flags, _, choices, _ in options
            if choices
        ]
        with_values = [
            flag for flags, _, choices, value in options if value and not choices for flag in flags
        ]
        if with_values:
            cases.append(f'        {"|".join(with_values)}) COMPREPLY=($(compgen -f -- "$cur")); return ;;')
        lines = [
            f"{function}() {{",
            '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
            '    case "$prev" in',
            *cases,
            "    esac",
            '    if [[ "$cur" == -* ]]; then',
            f"        COMPREPLY=($(compgen -W '{words}' -- \"$cur\"))",
            "    else",
            '        COMPREPLY=($(compgen -f -- "$cur"))',
            "    fi",
            "}",
            f"complete -o filenames -F {function} {command}",
        ]
        if shell == "zsh":  # zsh runs bash completions through bashcompinit, which needs compinit
            lines = [
                "(( $+functions[compdef] )) || { autoload -U +X compinit && compinit; }",
                "autoload -U +X bashcompinit && bashcompinit",
                *lines,
            ]
        return "\n".join(lines) + "\n"
    if shell == "fish":
        lines = []
        for flags, help_text, choices, value in options:
            parts = [f"complete -c {command}"]
            parts += [f"-s {f[1:]}" for f in flags if len(f) == 2]
            parts += [f"-l {f[2:]}" for f in flags if f.startswith("--")]
            if value:
                parts.append(f"-x -a '{' '.join(choices)}'" if choices else "-r -F")
            parts.append("-d " + _single_quoted(help_text.split(" (")[0]))
            lines.append(" ".join(parts))
        return "\n".join(lines) + "\n"
    words = ", ".join(f"'{flag}'" for flags, _, _, _ in options for flag in flags)
    return (
        f"Register-ArgumentCompleter -Native -CommandName '{command}' -ScriptBlock {{\n"
        "    param($wordToComplete, $commandAst, $cursorPosition)\n"
        f'    @({words}) | Where-Object {{ $_ -like "$wordToComplete*" }} | ForEach-Object {{\n'
        "        [System.Management.Automation.CompletionResult]::new($_, $_, 'ParameterName', $_)\n"
        "    }\n"
        "}\n"
    )


def _single_quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
