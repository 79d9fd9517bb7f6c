"""Self-extracting environments: a script stub, the pack (a tar), and pixi-pack's zipapp, in one file.

``environment.sh`` is a POSIX sh stub, then the tar, then the ``.pyz`` *last*: zip readers find the
central directory from the end of the file, so ``python3 environment.sh`` runs the zipapp, and the
stub does just that, telling pixi-unpack where the tar sits in the script itself::

    "$python" -I "$0" unpack --payload-offset N --payload-length M --payload-sha256 H "$0" "$@"

``environment.ps1`` (Windows) can't carry raw bytes, as PowerShell parses a whole script before running
it: the tar and the zipapp follow as one base64 block inside a comment after the script's ``exit``, and
the script decodes that block, streaming, to a temporary file that is both the pack (at offset 0) and
the zipapp (at its end), and runs it the same way.

The offsets are written into the scripts themselves; they are found as the fixed point of "render the
script with offset N, measure it", which a few rounds reach because the length only grows with N's digits.
"""

from __future__ import annotations

import base64
import re
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urldefrag

from pixi_pack.errors import IntegrityError, PixiPackError
from pixi_pack.formats.archive import RangeReader, copy_range, write_at
from pixi_pack.formats.locations import is_url
from pixi_pack.io._vendor_loader import running_zipapp
from pixi_pack.io.hashing import hash_file, hash_stream

CHUNK_SIZE = 1 << 20
BASE64_LINE = 76
"""Characters of base64 per line in ``environment.ps1``; 57 bytes encode to exactly one line."""
BASE64_LINE_BYTES = BASE64_LINE // 4 * 3
#: Stands in for the payload's sha256 while the stub is measured (the same width as the real one).
_NO_SHA256 = "0" * 64

SH_STUB = """\
#!/bin/sh
# A self-extracting pixi-pack environment: this script, then the pack (a tar), then pixi-pack's zipapp.
# Run it to unpack the environment (pixi-unpack's options apply: -o DIR, -e NAME, -s SHELL, --help).
# It needs Python >= 3.9: python3 or python on PATH, or the one PIXI_PACK_PYTHON names.
# The pack is the {length} bytes from byte {offset_1} of this file; to get it without Python:
#   tail -c +{offset_1} THIS_FILE | head -c {length} > environment.tar

pixi_pack_python_ok() {{
    "$1" -I -S -c 'import sys; sys.exit(sys.version_info < (3, 9))' >/dev/null 2>&1
}}

pixi_pack_main() {{
    # A truncated download, named as one (without wc, as on a bare PATH, Python's checks still apply).
    size=$(wc -c < "$0" 2>/dev/null) && size=$(echo $size) || size=
    if [ -n "$size" ] && [ "$size" != {total} ]; then
        echo "error: $0 is $size bytes, not {total}: an incomplete or damaged download; download it again" >&2
        exit 1
    fi
    if [ -n "${{PIXI_PACK_PYTHON:-}}" ]; then
        if ! pixi_pack_python_ok "$PIXI_PACK_PYTHON"; then
            echo "error: PIXI_PACK_PYTHON=$PIXI_PACK_PYTHON is not a working Python >= 3.9" >&2
            exit 1
        fi
        python=$PIXI_PACK_PYTHON
    else
        python=
        for candidate in python3 python python3.14 python3.13 python3.12 python3.11 python3.10 python3.9; do
            if command -v "$candidate" >/dev/null 2>&1 && pixi_pack_python_ok "$candidate"; then
                python=$candidate
                break
            fi
        done
        if [ -z "$python" ]; then
            echo "error: unpacking this environment needs Python >= 3.9, and there is no python3 or python" \\
                "of that version on PATH: install one, or set PIXI_PACK_PYTHON to its path" >&2
            exit 1
        fi
    fi
    # The zipapp unpacks its dependencies into SHIV_ROOT: a temporary one, removed on the way out.
    tmp=$(mktemp -d "${{TMPDIR:-/tmp}}/pixi-unpack.XXXXXX") || exit 1
    trap 'rm -rf "$tmp"' EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
    unset SHIV_INTERPRETER SHIV_ENTRY_POINT SHIV_MODULE SHIV_CONSOLE_SCRIPT SHIV_PREPEND_PYTHONPATH
    SHIV_ROOT=$tmp "$python" -I "$0" unpack \\
        --payload-offset {offset} --payload-length {length} --payload-sha256 {sha256} "$0" "$@"
    exit $?
}}

pixi_pack_main "$@"
exit 1
"""

PS1_SCRIPT = """\
# A self-extracting pixi-pack environment for Windows PowerShell 5.1+ and PowerShell 7.
# Run it to unpack the environment (pixi-unpack's options apply: -o DIR, -e NAME, -s SHELL, --help).
# It needs Python >= 3.9: the py launcher, python3 or python on PATH, or the one $env:PIXI_PACK_PYTHON names.
# After the script, a comment holds the base64 of the pack (a tar) followed by pixi-pack's zipapp.
$ErrorActionPreference = 'Stop'
$PayloadOffset = {offset}
$PayloadBase64Length = {base64_length}
$PayloadLength = {length}
$PayloadSha256 = '{sha256}'

function Find-Python {{
    $ErrorActionPreference = 'SilentlyContinue'
    if ($env:PIXI_PACK_PYTHON) {{
        $tries = @(@{{ Exe = $env:PIXI_PACK_PYTHON; Args = @() }})
    }} else {{
        $tries = @(@{{ Exe = 'py'; Args = @('-3') }}, @{{ Exe = 'python3'; Args = @() }}, @{{ Exe = 'python'; Args = @() }})
    }}
    foreach ($try in $tries) {{
        if (-not (Get-Command $try.Exe -ErrorAction SilentlyContinue)) {{ continue }}
        $tryArgs = $try.Args
        & $try.Exe @tryArgs -I -S -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>$null | Out-Null
        if ($LASTEXITCODE -eq 0) {{ return $try }}
    }}
    return $null
}}

$python = Find-Python
if (-not $python) {{
    [Console]::Error.WriteLine('error: unpacking this environment needs Python >= 3.9, and there is no py, python3 or python of that version on PATH: install one, or set PIXI_PACK_PYTHON to its path')
    exit 1
}}
$tmp = Join-Path ([IO.Path]::GetTempPath()) ('pixi-unpack-' + [Guid]::NewGuid().ToString('N'))
New-Item -ItemType Directory -Path $tmp | Out-Null
$savedShivRoot = $env:SHIV_ROOT
$status = 1
try {{
    # The tar followed by the zipapp: the pack at offset 0 and a runnable .pyz at once.
    $pyz = Join-Path $tmp 'environment.pyz'
    $in = [IO.File]::OpenRead($PSCommandPath)
    try {{
        $out = [IO.File]::Create($pyz)
        $mode = [Security.Cryptography.FromBase64TransformMode]::IgnoreWhiteSpaces
        $transform = New-Object Security.Cryptography.FromBase64Transform -ArgumentList $mode
        $decoder = New-Object Security.Cryptography.CryptoStream -ArgumentList $out, $transform, ([Security.Cryptography.CryptoStreamMode]::Write)
        try {{
            [void]$in.Seek($PayloadOffset, [IO.SeekOrigin]::Begin)
            $buffer = New-Object byte[] 1048576
            $left = [long]$PayloadBase64Length
            while ($left -gt 0) {{
                $read = $in.Read($buffer, 0, [int][Math]::Min([long]$buffer.Length, $left))
                if ($read -le 0) {{ throw 'this file is truncated: download it again' }}
                $decoder.Write($buffer, 0, $read)
                $left -= $read
            }}
            $decoder.FlushFinalBlock()
        }} finally {{
            $decoder.Dispose()
        }}
    }} finally {{
        $in.Dispose()
    }}
    # The zipapp unpacks its dependencies into SHIV_ROOT: a temporary one, removed on the way out.
    $env:SHIV_ROOT = Join-Path $tmp 'shiv'
    # Windows PowerShell turns redirected stderr lines into errors: progress there must not stop us.
    $ErrorActionPreference = 'Continue'
    $pythonArgs = $python.Args
    & $python.Exe @pythonArgs -I $pyz unpack --payload-offset 0 --payload-length $PayloadLength --payload-sha256 $PayloadSha256 $pyz @args
    $status = $LASTEXITCODE
}} finally {{
    $env:SHIV_ROOT = $savedShivRoot
    Remove-Item -LiteralPath $tmp -Recurse -Force -ErrorAction SilentlyContinue
}}
exit $status
<#
"""

PS1_END = "#>\n"


def write_executable(payload: Path, pyz: Path, destination: BinaryIO, *, windows: bool) -> None:
    """Write a self-extracting environment: ``environment.ps1`` if ``windows``, else ``environment.sh``.

    ``payload`` is the pack's tar and ``pyz`` the pixi-pack zipapp that will unpack it; both are
    streamed, never read whole.
    """
    sha256 = hash_file(payload).sha256
    length = payload.stat().st_size
    if windows:
        _write_ps1(payload, pyz, destination, sha256=sha256, length=length)
    else:
        _write_sh(payload, pyz, destination, sha256=sha256, length=length)


def render_sh_stub(*, sha256: str, length: int, zipapp_length: int) -> bytes:
    """The sh stub for a tar of ``length`` bytes, which starts right after the stub, and a zipapp after it.

    The stub checks the file's whole size first, so a truncated download is named as one instead of
    failing inside Python.
    """
    return _fixed_point(
        lambda offset: SH_STUB.format(
            offset=offset,
            offset_1=offset + 1,
            length=length,
            sha256=sha256,
            total=offset + length + zipapp_length,
        )
    )


def render_ps1_script(*, sha256: str, length: int, zipapp_length: int) -> bytes:
    """``environment.ps1`` up to its base64 block (CRLF line ends), for a tar of ``length`` bytes."""
    base64_length = base64_text_length(length + zipapp_length)
    return _fixed_point(
        lambda offset: PS1_SCRIPT.format(
            offset=offset, base64_length=base64_length, length=length, sha256=sha256
        ).replace("\n", "\r\n")
    )


def base64_text_length(size: int) -> int:
    """Bytes of base64 text (CRLF after every line) that ``size`` bytes encode to."""
    characters = (size + 2) // 3 * 4
    lines = -(-characters // BASE64_LINE)
    return characters + 2 * lines


def _fixed_point(render: Callable[[int], str]) -> bytes:
    offset = 0
    while True:
        text = render(offset).encode("ascii")
        if len(text) == offset:
            return text
        offset = len(text)


def _write_sh(payload: Path, pyz: Path, destination: BinaryIO, *, sha256: str, length: int) -> None:
    destination.write(render_sh_stub(sha256=sha256, length=length, zipapp_length=pyz.stat().st_size))
    for part in (payload, pyz):
        with open(part, "rb") as source:
            shutil.copyfileobj(source, destination, CHUNK_SIZE)


SH_HEAD = b"#!/bin/sh\n# A self-extracting pixi-pack environment"
"""How every ``environment.sh`` starts."""
_SH_STUB_LIMIT = 16 << 10
"""More than any stub is long: where the search for its numbers stops."""
_SH_PAYLOAD = re.compile(
    rb"--payload-offset (\d{1,20}) --payload-length (\d{1,20}) --payload-sha256 ([0-9a-f]{64}) "
)


def sh_payload_args(path: Path) -> list[str] | None:
    """The pixi-unpack options that locate the pack inside ``environment.sh`` at ``path``, as its stub
    states them; ``None`` if ``path`` is not one (a plain ``.pyz``).

    ``python3 environment.sh ...`` runs the zipapp at its end without the stub: this is how it still
    unpacks what it carries.
    """
    try:
        with open(path, "rb") as script:
            head = script.read(_SH_STUB_LIMIT)
    except OSError:
        return None
    match = _SH_PAYLOAD.search(head) if head.startswith(SH_HEAD) else None
    if match is None:
        return None
    offset, length, sha256 = (group.decode() for group in match.groups())
    return ["--payload-offset", offset, "--payload-length", length, "--payload-sha256", sha256]


def sh_payload_offset(length: int, zipapp_length: int) -> int:
    """Where a payload of ``length`` bytes starts in ``environment.sh``: right after the stub."""
    return len(render_sh_stub(sha256=_NO_SHA256, length=length, zipapp_length=zipapp_length))


def complete_sh(fd: int, length: int, pyz: Path) -> None:
    """Finish an ``environment.sh`` assembled in place: its payload of ``length`` bytes is already at
    :func:`sh_payload_offset`; the zipapp goes after it, then the stub with the payload's sha256 before it.
    """
    zipapp_length = pyz.stat().st_size
    offset = sh_payload_offset(length, zipapp_length)
    with open(pyz, "rb") as source:
        copy_range(source.fileno(), 0, fd, offset + length, zipapp_length)
    sha256 = hash_stream(RangeReader(fd, offset, length)).sha256
    write_at(fd, render_sh_stub(sha256=sha256, length=length, zipapp_length=zipapp_length), 0)


def _write_ps1(payload: Path, pyz: Path, destination: BinaryIO, *, sha256: str, length: int) -> None:
    zipapp_length = pyz.stat().st_size
    destination.write(render_ps1_script(sha256=sha256, length=length, zipapp_length=zipapp_length))
    for line in _base64_lines(_chunks(payload, pyz), BASE64_LINE_BYTES * 1024):
        destination.write(line)
    destination.write(PS1_END.replace("\n", "\r\n").encode("ascii"))


def _chunks(*paths: Path) -> Iterator[bytes]:
    for path in paths:
        with open(path, "rb") as source:
            while True:
                chunk = source.read(CHUNK_SIZE)
                if not chunk:
                    break
                yield chunk


def _base64_lines(chunks: Iterator[bytes], block: int) -> Iterator[bytes]:
    """Base64 of the concatenated ``chunks`` in CRLF-terminated lines, encoded ``block`` bytes at a time.

    ``block`` is a multiple of 57 so every block ends on a line boundary.
    """
    pending = b""
    for chunk in chunks:
        pending += chunk
        whole = len(pending) - len(pending) % block
        if whole:
            yield _encode_lines(pending[:whole])
            pending = pending[whole:]
    if pending:
        yield _encode_lines(pending)


def _encode_lines(data: bytes) -> bytes:
    text = base64.b64encode(data)
    return b"".join(text[i : i + BASE64_LINE] + b"\r\n" for i in range(0, len(text), BASE64_LINE))


def find_unpacker(source: str | None, download: Callable[[str, Path], None], *, directory: Path) -> Path:
    """The pixi-pack zipapp to embed in a self-extracting environment.

    ``source`` is ``--pixi-unpack-source``: a path, or a URL fetched with ``download(url, destination)``
    (so mirrors and authentication apply) that may end in ``#sha256=<hex>`` to be verified. Without it,
    the ``.pyz`` this process runs from. A downloaded file goes into ``directory``, which the caller
    owns and removes.
    """
    if source is None:
        path = running_zipapp()
        if path is None:
            msg = (
                "--create-executable embeds the pixi-pack zipapp, and this pixi-pack does not run from one: "
                "pass --pixi-unpack-source dist/pixi-pack.pyz (`make zipapp` builds it) or a URL of one"
            )
            raise PixiPackError(msg)
    elif is_url(source):
        path = _download_unpacker(source, download, directory)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            msg = f"--pixi-unpack-source {source}: no such file"
            raise PixiPackError(msg)
    _check_zipapp(path, source or str(path))
    return path


def _download_unpacker(url: str, download: Callable[[str, Path], None], directory: Path) -> Path:
    location, fragment = urldefrag(url)
    expected = None
    if fragment:
        match = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", fragment)
        if match is None:
            msg = f"--pixi-unpack-source {url}: the only fragment understood is #sha256=<64 hex digits>"
            raise PixiPackError(msg)
        expected = match.group(1).lower()
    name = location.rstrip("/").rsplit("/", 1)[-1] or "pixi-pack.pyz"
    path = directory / name
    download(location, path)
    if expected is not None:
        actual = hash_file(path).sha256
        if actual != expected:
            msg = f"--pixi-unpack-source {location}: sha256 mismatch (expected {expected})"
            raise IntegrityError(msg)
    return path


def _check_zipapp(path: Path, what: str) -> None:
    """Refuse anything but a plain pixi-pack zipapp (a native pixi-unpack binary, a self-extracting file)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            first = min((info.header_offset for info in archive.infolist()), default=0)
    except (zipfile.BadZipFile, OSError) as exc:
        msg = f"--pixi-unpack-source {what}: not a pixi-pack zipapp (.pyz): {exc}"
        raise PixiPackError(msg) from exc
    if "__main__.py" not in names or "site-packages/pixi_pack/cli.py" not in names:
        msg = f"--pixi-unpack-source {what}: a zip file, but not a pixi-pack zipapp (.pyz)"
        raise PixiPackError(msg)
    if first > 4096:
        msg = (
            f"{what} is a self-extracting environment, not a pixi-pack zipapp: "
            "pass --pixi-unpack-source with the pixi-pack .pyz to embed"
        )
        raise PixiPackError(msg)
