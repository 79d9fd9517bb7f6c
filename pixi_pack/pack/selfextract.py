"""Self-extracting environments: a script stub, the pack (a tar), and pixi-pack's zipapp, in one file.

``environment.sh`` is a POSIX sh stub, then the tar, then the ``.pyz`` *last*: zip readers find the
central directory from the end of the file, so ``python3 environment.sh`` runs the zipapp, and the
stub does just that, telling pixi-unpack where the tar sits in the script itself::

    "$python" -I "$0" unpack --payload-offset N --payload-length M --payload-sha256 H "$0" "$@"

``environment.cmd`` (or ``.bat``, Windows) has the same layout with a batch stub: cmd.exe reads a batch
file a line at a time and stops at the stub's ``exit /b``, so it never parses the payload, and the stub
only ever jumps forward (a ``goto`` to an earlier label would scan the whole payload for it).

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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Literal

from pixi_pack.errors import PixiPackError
from pixi_pack.formats.archive import RangeReader, copy_range, write_at
from pixi_pack.io.hashing import hash_file, hash_stream

CHUNK_SIZE = 1 << 20
BASE64_LINE = 76
"""Characters of base64 per line in ``environment.ps1``; 57 bytes encode to exactly one line."""
BASE64_LINE_BYTES = BASE64_LINE // 4 * 3
PS1_WARN_ABOVE = 500_000_000
"""Above this many bytes of pack, writing ``environment.ps1`` warns and recommends ``environment.cmd``."""
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

CMD_STUB = """\
@echo off
rem A self-extracting pixi-pack environment: this script, then the pack (a tar), then pixi-pack's zipapp.
rem Run it to unpack the environment (pixi-unpack's options apply: -o DIR, -e NAME, -s SHELL, --help).
rem It needs Python >= 3.9: the one PIXI_PACK_PYTHON names, else the py launcher, python or python3 on PATH.
rem The pack is the {length} bytes from byte {offset} (counted from 0) of this file.
rem cmd.exe reads this file a line at a time and never reads past the "exit /b" at the end of this stub.
setlocal EnableExtensions DisableDelayedExpansion
for %%F in ("%~f0") do set "pixi_pack_size=%%~zF"
if "%pixi_pack_size%"=="{total}" goto pixi_pack_sized
>&2 echo error: "%~f0" is %pixi_pack_size% bytes, not {total}: an incomplete or damaged download; download it again
exit /b 1
:pixi_pack_sized
set "pixi_pack_exe="
set "pixi_pack_args="
if not defined PIXI_PACK_PYTHON goto pixi_pack_search
"%PIXI_PACK_PYTHON%" -I -S -c "import sys; sys.exit(sys.version_info < (3, 9))" >nul 2>&1
if errorlevel 1 goto pixi_pack_bad_python
set "pixi_pack_exe=%PIXI_PACK_PYTHON%"
goto pixi_pack_found
:pixi_pack_search
py -3 -I -S -c "import sys; sys.exit(sys.version_info < (3, 9))" >nul 2>&1
if not errorlevel 1 (set "pixi_pack_exe=py" & set "pixi_pack_args=-3" & goto pixi_pack_found)
python -I -S -c "import sys; sys.exit(sys.version_info < (3, 9))" >nul 2>&1
if not errorlevel 1 (set "pixi_pack_exe=python" & goto pixi_pack_found)
python3 -I -S -c "import sys; sys.exit(sys.version_info < (3, 9))" >nul 2>&1
if not errorlevel 1 (set "pixi_pack_exe=python3" & goto pixi_pack_found)
>&2 echo error: unpacking this environment needs Python ^>= 3.9, and there is no py, python or python3 of that version on PATH: install one, or set PIXI_PACK_PYTHON to its path
exit /b 1
:pixi_pack_bad_python
>&2 echo error: PIXI_PACK_PYTHON="%PIXI_PACK_PYTHON%" is not a working Python ^>= 3.9
exit /b 1
:pixi_pack_found
rem The zipapp unpacks its dependencies into SHIV_ROOT: a new temporary folder, removed on the way out.
set "pixi_pack_tmp=%TEMP%\\pixi-unpack-%RANDOM%%RANDOM%-%RANDOM%%RANDOM%-%RANDOM%%RANDOM%"
mkdir "%pixi_pack_tmp%" 2>nul
if errorlevel 1 goto pixi_pack_no_tmp
set "SHIV_INTERPRETER="
set "SHIV_ENTRY_POINT="
set "SHIV_MODULE="
set "SHIV_CONSOLE_SCRIPT="
set "SHIV_PREPEND_PYTHONPATH="
set "SHIV_ROOT=%pixi_pack_tmp%"
"%pixi_pack_exe%" %pixi_pack_args% -I "%~f0" unpack --payload-offset {offset} --payload-length {length} --payload-sha256 {sha256} "%~f0" %*
set "pixi_pack_status=%ERRORLEVEL%"
rmdir /s /q "%pixi_pack_tmp%" 2>nul
exit /b %pixi_pack_status%
:pixi_pack_no_tmp
>&2 echo error: could not create the temporary folder "%pixi_pack_tmp%": check TEMP, then run this again
exit /b 1
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


Form = Literal["sh", "cmd", "ps1"]
"""What a self-extracting file is: ``environment.sh``, ``environment.cmd`` (``.bat``) or ``environment.ps1``."""


def executable_form(output: Path | None, *, windows: bool) -> Form:
    """The form ``--create-executable`` writes to ``output`` (``None``: stdout): ``.cmd`` and ``.bat`` names
    get the batch stub, other Windows names ``environment.ps1`` as upstream, the rest ``environment.sh``."""
    if not windows:
        return "sh"
    suffix = output.suffix.lower() if output is not None else ""
    return "cmd" if suffix in (".cmd", ".bat") else "ps1"


def write_executable(payload: Path, pyz: Path, destination: BinaryIO, *, form: Form) -> None:
    """Write a self-extracting environment of the given ``form``.

    ``payload`` is the pack's tar and ``pyz`` the pixi-pack zipapp that will unpack it; both are
    streamed, never read whole.
    """
    sha256 = hash_file(payload).sha256
    length = payload.stat().st_size
    if form == "ps1":
        _write_ps1(payload, pyz, destination, sha256=sha256, length=length)
        return
    destination.write(render_stub(form, sha256=sha256, length=length, zipapp_length=pyz.stat().st_size))
    for part in (payload, pyz):
        with open(part, "rb") as source:
            shutil.copyfileobj(source, destination, CHUNK_SIZE)


def render_stub(form: Form, *, sha256: str, length: int, zipapp_length: int) -> bytes:
    """The stub of ``environment.sh`` (``form`` ``sh``) or ``environment.cmd`` (``cmd``, CRLF line ends)
    for a tar of ``length`` bytes, which starts right after the stub, and a zipapp after it.

    The stub checks the file's whole size first, so a truncated download is named as one instead of
    failing inside Python.
    """
    if form == "cmd":
        return _fixed_point(
            lambda offset: CMD_STUB.format(
                offset=offset, length=length, sha256=sha256, total=offset + length + zipapp_length
            ).replace("\n", "\r\n")
        )
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


STUB_HEADS = (
    b"#!/bin/sh\n# A self-extracting pixi-pack environment",
    b"@echo off\r\nrem A self-extracting pixi-pack environment",
)
"""How every ``environment.sh`` and every ``environment.cmd`` starts."""
_SH_STUB_LIMIT = 16 << 10
"""More than any stub is long: where the search for its numbers stops."""
_SH_PAYLOAD = re.compile(
    rb"--payload-offset (\d{1,20}) --payload-length (\d{1,20}) --payload-sha256 ([0-9a-f]{64}) "
)


def stub_payload_args(path: Path) -> list[str] | None:
    """The pixi-unpack options that locate the pack inside ``environment.sh`` or ``environment.cmd`` at
    ``path``, as its stub states them; ``None`` if ``path`` is neither (a plain ``.pyz``).

    ``python3 environment.sh ...`` runs the zipapp at its end without the stub: this is how it still
    unpacks what it carries.
    """
    try:
        with open(path, "rb") as script:
            head = script.read(_SH_STUB_LIMIT)
    except OSError:
        return None
    match = _SH_PAYLOAD.search(head) if head.startswith(STUB_HEADS) else None
    if match is None:
        return None
    offset, length, sha256 = (group.decode() for group in match.groups())
    return ["--payload-offset", offset, "--payload-length", length, "--payload-sha256", sha256]


def stub_payload_offset(form: Form, length: int, zipapp_length: int) -> int:
    """Where a payload of ``length`` bytes starts in ``environment.sh`` or ``.cmd``: right after the stub."""
    return len(render_stub(form, sha256=_NO_SHA256, length=length, zipapp_length=zipapp_length))


def complete_stub(fd: int, form: Form, length: int, pyz: Path) -> None:
    """Finish an ``environment.sh`` or ``.cmd`` assembled in place: its payload of ``length`` bytes is already
    at :func:`stub_payload_offset`; the zipapp goes after it, then the stub with the payload's sha256 before it.
    """
    zipapp_length = pyz.stat().st_size
    offset = stub_payload_offset(form, length, zipapp_length)
    with open(pyz, "rb") as source:
        copy_range(source.fileno(), 0, fd, offset + length, zipapp_length)
    sha256 = hash_stream(RangeReader(fd, offset, length)).sha256
    write_at(fd, render_stub(form, sha256=sha256, length=length, zipapp_length=zipapp_length), 0)


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


_PS1_NUMBERS = re.compile(
    rb"^\$(PayloadOffset|PayloadBase64Length|PayloadLength) = (\d{1,20})\r$", re.MULTILINE
)


def decode_ps1_pack(path: Path, destination: BinaryIO) -> None:
    """Write the pack (the tar) that ``environment.ps1`` at ``path`` carries to ``destination``, decoding
    its base64 as the script does, streaming; refuse a file that is not one."""
    with open(path, "rb") as script:
        head = script.read(_SH_STUB_LIMIT)
        numbers = {key.decode(): int(value) for key, value in _PS1_NUMBERS.findall(head)}
        if set(numbers) != {"PayloadOffset", "PayloadBase64Length", "PayloadLength"}:
            msg = f"{path} is not an environment.ps1 written by pixi-pack"
            raise PixiPackError(msg)
        script.seek(numbers["PayloadOffset"])
        left, wanted, pending = numbers["PayloadBase64Length"], numbers["PayloadLength"], b""
        while left > 0 and wanted > 0:
            chunk = script.read(min(CHUNK_SIZE, left))
            if not chunk:
                msg = f"{path} is truncated: download it again"
                raise PixiPackError(msg)
            left -= len(chunk)
            pending += re.sub(rb"\s", b"", chunk)
            whole = len(pending) - len(pending) % 4
            try:
                data = base64.b64decode(pending[:whole], validate=True)
            except ValueError as exc:
                msg = f"{path} holds damaged base64: {exc}"
                raise PixiPackError(msg) from exc
            destination.write(data[:wanted])
            wanted -= min(wanted, len(data))
            pending = pending[whole:]
