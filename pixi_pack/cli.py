"""Command lines of ``pixi-pack`` and ``pixi-unpack``: argument parsing only, the work is in the library."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from pixi_pack import __version__
from pixi_pack.arguments import build_pack_parser, build_unpack_parser, completion_parser, completion_script
from pixi_pack.errors import PixiPackError
from pixi_pack.models import DEFAULT_OUTPUT_FILE, PackOptions, UnpackOptions
from pixi_pack.platforms import current_subdir, is_windows
from pixi_pack.progress import Snapshot

if TYPE_CHECKING:
    from pixi_pack.formats.listing import Listing

logger = logging.getLogger("pixi_pack")


class _Formatter(logging.Formatter):
    """The message, with ``warning: `` before every warning."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"warning: {text}" if record.levelno == logging.WARNING else text


#: Off a terminal, a phase's progress is printed when it has moved by this much, or after this long.
PLAIN_STEP = 0.1
PLAIN_SECONDS = 5.0


class _StderrHandler(logging.Handler):
    """Messages on stderr, and progress as one live line on a terminal or a few plain lines in a log.

    On a terminal the live line is redrawn in place (``\\r``, erase to the end of the line) and moved
    out of the way of any other message; elsewhere a phase's progress is printed at most every 10 %
    or 5 s, with no carriage returns.
    """

    def __init__(self, stream: TextIO, *, live: bool) -> None:
        super().__init__()
        self.stream = stream
        self.live = live
        self._shown = ""
        self._plain: dict[str, tuple[float, float]] = {}
        """For each phase off a terminal: the fraction and the time it was last printed at."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            snapshot = getattr(record, "progress", None)
            if isinstance(snapshot, Snapshot):
                self._progress(snapshot)
            else:
                self._message(self.format(record))
            self.stream.flush()
        except Exception:
            self.handleError(record)

    def _message(self, text: str) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        if self._shown:
            self.stream.write(self._shown)

    def _progress(self, snapshot: Snapshot) -> None:
        if self.live:
            self.stream.write("\r\x1b[K")
            if snapshot.final:
                self._shown = ""
                self.stream.write(snapshot.final_line() + "\n")
            else:
                width = shutil.get_terminal_size().columns - 1
                self._shown = snapshot.live()[: max(width, 20)]
                self.stream.write(self._shown)
            return
        if snapshot.final:
            self._plain.pop(snapshot.verb, None)
            self.stream.write(snapshot.final_line() + "\n")
            return
        now = time.monotonic()
        fraction, at = self._plain.setdefault(snapshot.verb, (0.0, now))
        if snapshot.fraction >= fraction + PLAIN_STEP or now - at >= PLAIN_SECONDS:
            self._plain[snapshot.verb] = (snapshot.fraction, now)
            self.stream.write(snapshot.summary() + "\n")


def _configure_logging(verbose: int, quiet: int) -> None:
    """``-q``: errors only; default: messages and progress; ``-v``: a line per package too."""
    level = logging.ERROR if quiet else logging.INFO - 10 * verbose
    live = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    handler = _StderrHandler(sys.stderr, live=live)
    handler.setFormatter(_Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(max(logging.DEBUG, min(level, logging.CRITICAL)))
    logger.propagate = False


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so the same cleanup runs."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def _run(func: Callable[[argparse.Namespace], None], args: argparse.Namespace) -> int:
    main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        func(args)
    except PixiPackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except _Terminated:
        print("error: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


def pack_options_from_args(args: argparse.Namespace) -> PackOptions:
    """Turn parsed ``pixi-pack`` arguments into :class:`PackOptions`."""
    from pixi_pack.lock.config import load_config
    from pixi_pack.lock.lockfile import resolve_platform

    if args.from_prefix is not None:
        if args.manifest_path is not None:
            msg = "--from-prefix packs an installed environment: leave out the manifest path"
            raise PixiPackError(msg)
        platform = args.platform or ""
        subdir = platform or _prefix_platform(args.from_prefix)
    else:
        if args.pkgs_dir:
            msg = "--pkgs-dir goes with --from-prefix"
            raise PixiPackError(msg)
        platform = args.platform or current_subdir()
        subdir = resolve_platform(args.manifest_path or Path.cwd(), args.environment, platform)
    if args.pixi_unpack_source and not args.create_executable:
        msg = "--pixi-unpack-source requires --create-executable"
        raise PixiPackError(msg)
    output: Path | None
    if args.output_file == "-":
        if args.directory_only:
            msg = "--directory-only cannot write to stdout"
            raise PixiPackError(msg)
        output = None
    elif args.output_file is not None:
        output = Path(args.output_file)
        if args.create_executable:
            _check_executable_name(output, subdir)
    elif args.create_executable:
        output = Path.cwd() / ("environment.ps1" if is_windows(subdir) else "environment.sh")
    elif args.directory_only:
        output = Path.cwd() / "environment"
    else:
        output = Path.cwd() / DEFAULT_OUTPUT_FILE
    return PackOptions(
        manifest_path=args.manifest_path or Path.cwd(),
        output=output,
        platform=platform,
        environment=args.environment,
        directory_only=args.directory_only,
        create_executable=args.create_executable,
        pixi_unpack_source=args.pixi_unpack_source,
        inject=tuple(args.inject),
        ignore_pypi_non_wheel=args.ignore_pypi_non_wheel,
        cache_dir=args.use_cache,
        config=load_config(args.config, args.auth_file),
        list_contents=args.sbom is not None,
        from_prefix=args.from_prefix,
        package_dirs=_package_dirs(args.pkgs_dir, args.from_prefix) if args.from_prefix else (),
        base=args.base,
    )


def _package_dirs(given: Sequence[Path], prefix: Path) -> tuple[Path, ...]:
    """Where conda keeps package archives, after the folders given: ``$CONDA_PKGS_DIRS``, the
    installation's ``pkgs`` (``<root>/envs/<name>`` -> ``<root>/pkgs``), ``~/.conda/pkgs``."""
    configured = [Path(p) for p in os.environ.get("CONDA_PKGS_DIRS", "").split(",") if p.strip()]
    prefix = prefix.absolute()
    root = prefix.parent.parent if prefix.parent.name == "envs" else prefix
    folders = [*given, *configured, root / "pkgs", Path.home() / ".conda" / "pkgs"]
    return tuple(dict.fromkeys(folders))


def _prefix_platform(prefix: Path) -> str:
    """The platform the records of ``prefix`` are for, to name the default output (``.sh`` or ``.ps1``)."""
    from pixi_pack.platforms import KNOWN_SUBDIRS

    for path in sorted((prefix / "conda-meta").glob("*.json")):
        try:
            subdir = json.loads(path.read_text(encoding="utf-8")).get("subdir")
        except (OSError, ValueError, AttributeError):
            continue
        if subdir in KNOWN_SUBDIRS and subdir != "noarch":
            return str(subdir)
    return current_subdir()


def _check_executable_name(output: Path, subdir: str) -> None:
    """A self-extracting file is written under the name given, unless that name says it is something else."""
    forms = (".ps1", ".cmd", ".bat") if is_windows(subdir) else (".sh",)
    suffix = output.suffix.lower()
    if suffix in {".tar", ".sh", ".ps1", ".cmd", ".bat"} - set(forms):
        names = " or ".join(output.with_suffix(form).name for form in forms)
        msg = (
            f"-o {output} names a {output.suffix} file, but --create-executable for {subdir} writes a "
            f"{'/'.join(forms)} script: name it {names}, or leave out --create-executable"
        )
        raise PixiPackError(msg)


def _pack(args: argparse.Namespace) -> None:
    from pixi_pack.pack.assemble import pack

    if args.output_file == "-" and sys.stdout.isatty():
        msg = (
            "refusing to write a binary pack to a terminal: redirect standard output "
            "(pixi-pack -o - > environment.tar) or pass -o FILE"
        )
        raise PixiPackError(msg)
    if args.sbom == "-" and args.output_file == "-":
        msg = "--sbom - and -o - cannot share stdout: write one of them to a file"
        raise PixiPackError(msg)
    listing = pack(pack_options_from_args(args), stdout=sys.stdout.buffer)
    if listing is not None:
        _write_sbom(args.sbom, listing)


def _write_sbom(destination: str, listing: Listing) -> None:
    """The SBOM of ``listing`` to a file (via a temporary name) or, for ``-``, to stdout."""
    from pixi_pack.formats.sbom import sbom_json
    from pixi_pack.io import tempfiles

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None and not epoch.isdigit():
        msg = f"SOURCE_DATE_EPOCH must be a number of seconds, not {epoch!r}"
        raise PixiPackError(msg)
    text = sbom_json(listing, timestamp=int(epoch) if epoch else None)
    if destination == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(destination)
    try:
        with tempfiles.replacing(path, mode=0o644) as out:
            out.write(text.encode("utf-8"))
    except OSError as exc:
        msg = f"could not write the SBOM {path}: {exc.strerror or exc}"
        raise PixiPackError(msg) from exc
    logger.info("wrote the SBOM of %d packages to %s", len(listing.entries), path)


def _unpack(args: argparse.Namespace) -> None:
    from pixi_pack.install.unpack import unpack
    from pixi_pack.io.zstd import Decompressor

    pack_file = None if args.pack_file == "-" else Path(args.pack_file)
    options = UnpackOptions(
        pack=pack_file,
        output_directory=args.output_directory,
        env_name=args.env_name,
        shell=args.shell,
        payload_offset=args.payload_offset,
        payload_length=args.payload_length,
        payload_sha256=args.payload_sha256,
        ignore_platform=args.ignore_platform,
        ignore_virtual_packages=args.ignore_virtual_packages,
        force=args.force,
        update=args.update,
    )
    if args.json and not args.list:
        msg = "--json goes with --list"
        raise PixiPackError(msg)
    if args.list or args.verify_only or args.sbom is not None:
        _review(args, options)
        return
    # This process is the command's own, so the install may fork its workers (install/workers.py).
    unpack(options, stdin=sys.stdin.buffer, tuning=tuned_interpreter, zstd=Decompressor(), processes=True)


def _review(args: argparse.Namespace, options: UnpackOptions) -> None:
    """``--list``, ``--verify-only``, ``--sbom``: read the pack, write nothing but what was asked for."""
    from pixi_pack.formats.listing import listing_json, listing_table, read_listing
    from pixi_pack.install.unpack import reading_pack
    from pixi_pack.install.verify import verify_pack
    from pixi_pack.io.zstd import Decompressor

    if args.list and args.sbom == "-":
        msg = "--list and --sbom - cannot share stdout: write the SBOM to a file"
        raise PixiPackError(msg)
    zstd = Decompressor()
    with reading_pack(options, stdin=sys.stdin.buffer) as (reader, payload):
        if args.verify_only:
            result = verify_pack(reader, payload=payload, zstd=zstd)
            for problem in result.problems:
                logger.error("error: %s", problem)
            if result.problems:
                raise PixiPackError(result.summary())
            logger.info("%s", result.summary())
        if args.list or args.sbom is not None:
            listing = read_listing(reader, zstd=zstd)
            if args.list:
                sys.stdout.write(listing_json(listing) if args.json else listing_table(listing))
                sys.stdout.flush()
            if args.sbom is not None:
                _write_sbom(args.sbom, listing)


#: Seconds a thread may hold the GIL while another waits for it (Python's default is 5 ms).
GIL_SLICE = 0.0005


@contextmanager
def tuned_interpreter() -> Iterator[None]:
    """Short GIL slices and no cyclic garbage collection while installing; both restored after.

    Both settings are the whole process's, so the command line chooses them, around the install
    (``tuning`` of :func:`~pixi_pack.install.link.install_packages`). A thread writing small files lets
    go of the GIL at every ``open``/``write`` and must then wait for it while a thread parsing tar
    headers or placeholders runs Python: for up to 5 ms each time by default, which made the biggest
    package's thread wait more than it worked. :data:`GIL_SLICE` measured best (shorter slices lose
    more time switching). The per-file objects die by reference counting, yet the collector ran every
    700 of them; the few cycles left are collected once it is back on. benchmarks/README.md has the
    figures.
    """
    previous = sys.getswitchinterval()
    collecting = gc.isenabled()
    sys.setswitchinterval(min(previous, GIL_SLICE))
    gc.disable()
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
        if collecting:
            gc.enable()


def _completion(parser: argparse.ArgumentParser, argv: Sequence[str], command: str) -> int:
    """``completion -s SHELL``: the completion script of ``parser`` on stdout."""
    args = completion_parser(command).parse_args(argv)
    sys.stdout.write(completion_script(parser, args.shell, command))
    return 0


def pack_main(argv: Sequence[str] | None = None, prog: str = "pixi-pack") -> int:
    """Entry point of ``pixi-pack``; ``pixi-pack completion -s SHELL`` prints a completion script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["completion"]:  # the word alone: a manifest folder named completion-dir/ still packs
        return _completion(build_pack_parser(prog), argv[1:], prog)
    args = build_pack_parser(prog).parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    return _run(_pack, args)


def unpack_main(argv: Sequence[str] | None = None, prog: str = "pixi-unpack") -> int:
    """Entry point of ``pixi-unpack``; ``pixi-unpack completion -s SHELL`` prints a completion script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["completion"]:
        return _completion(build_unpack_parser(prog), argv[1:], prog)
    args = build_unpack_parser(prog).parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    return _run(_unpack, args)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pixi_pack`` and the .pyz: ``pack ...`` or ``unpack ...``.

    Started under a name containing ``unpack`` (a renamed or linked ``pixi-unpack.pyz``), it acts as
    pixi-unpack without the sub-command. Run as ``python3 environment.sh [OPTIONS]`` (a self-extracting
    pack is also the zipapp), it unpacks what that file carries, as ``sh environment.sh`` does.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    invoked_as = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if "unpack" in invoked_as and (not args or args[0] not in ("pack", "unpack")):
        return unpack_main(args)
    if args and args[0] == "pack":
        return pack_main(args[1:], prog="pixi-pack pack")
    if args and args[0] == "unpack":
        return unpack_main(args[1:], prog="pixi-pack unpack")
    if args and args[0] in ("-V", "--version"):
        print(f"pixi-pack {__version__}")
        return 0
    carrier = _self_extracting_file()
    if carrier is not None:
        script, payload = carrier
        return unpack_main([*payload, str(script), *args], prog=script.name)
    usage = (
        "usage: pixi-pack {pack,unpack} ...\n\n"
        "  pack      pack a pixi environment into one archive (see 'pack --help')\n"
        "  unpack    unpack an environment created by pixi-pack (see 'unpack --help')\n"
        "  -V, --version  print the version"
    )
    if args and args[0] in ("-h", "--help"):
        print(usage)
        return 0
    print(usage, file=sys.stderr)
    print(
        f"error: {'unknown command ' + repr(args[0]) if args else 'missing command'}: choose pack or unpack",
        file=sys.stderr,
    )
    return 2


def _self_extracting_file() -> tuple[Path, list[str]] | None:
    """The ``environment.sh`` this process runs from, and the options that locate its pack."""
    from pixi_pack.io._vendor_loader import running_zipapp

    zipapp = running_zipapp()
    if zipapp is None:
        return None
    from pixi_pack.pack.selfextract import stub_payload_args

    payload = stub_payload_args(zipapp)
    return None if payload is None else (zipapp, payload)
