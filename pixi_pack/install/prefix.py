"""Prefix placeholder replacement: pure ``bytes -> bytes`` functions, the way rattler's ``link.rs`` does it.

conda-build writes the build prefix (the *placeholder*) into files; installing means writing the
environment's real prefix in its place. Text files get a plain find-and-replace (with the shebang line
handled on its own, because kernels limit its length). Binary files must keep their length, so each
NUL-terminated string holding the placeholder is rewritten and padded with NULs.
"""

from __future__ import annotations

import re

from pixi_pack.errors import InstallError
from pixi_pack.io.hashing import Readable
from pixi_pack.platforms import is_windows

#: Longest ``#!`` line Linux executes (``BINPRM_BUF_SIZE`` - 1); macOS allows 512.
MAX_SHEBANG_LINUX = 127
MAX_SHEBANG_MACOS = 512

# rattler's SHEBANG_REGEX: "#!", optional spaces, the interpreter path (a backslash-escaped space is
# part of it), then the rest of the line (arguments).
_SHEBANG = re.compile(r"#!(?:[ ]*)(/(?:\\ |[^ \n\r\t])*)(.*)\Z")
_PYTHON_EXE = re.compile(r"python(?:\d+(?:\.\d+)?)?\Z")


class PrefixTooLongError(InstallError):
    """A binary file's placeholder is shorter than the target prefix, so it cannot be replaced."""


def is_unix_platform(platform: str) -> bool:
    """Whether rattler treats ``platform`` as unix (shebangs are rewritten there only)."""
    return platform.startswith(("linux-", "osx-", "ios-", "android-", "emscripten-", "freebsd-"))


def prefix_for_platform(target_prefix: str, platform: str) -> str:
    """The prefix as it is written into files: Windows targets get forward slashes, as rattler does.

    Backslashes would turn into escapes inside the quoted strings that usually hold the prefix.
    """
    return target_prefix.replace("\\", "/") if is_windows(platform) else target_prefix


def replace_prefix(data: bytes, placeholder: str, target_prefix: str, file_mode: str, platform: str) -> bytes:
    """Replace ``placeholder`` in a file's ``data`` as rattler does for ``file_mode`` on ``platform``.

    Binary files of Windows targets are left as they are: DLLs do not embed an rpath.
    """
    prefix = prefix_for_platform(target_prefix, platform)
    if file_mode == "binary":
        if is_windows(platform):
            return data
        return replace_binary_placeholder(data, placeholder, prefix)
    return replace_text_placeholder(data, placeholder, prefix, platform)


def replace_text_placeholder(data: bytes, placeholder: str, target_prefix: str, platform: str) -> bytes:
    """Replace every occurrence of ``placeholder``; on unix targets the shebang line is fixed up too."""
    old, new = placeholder.encode(), target_prefix.encode()
    if not is_unix_platform(platform) or not data.startswith(b"#!"):
        return data.replace(old, new)
    end = data.find(b"\n")
    first, rest = (data, b"") if end < 0 else (data[:end], data[end:])
    shebang = rewrite_shebang(first.decode("utf-8", errors="replace"), placeholder, target_prefix, platform)
    return shebang.encode() + rest.replace(old, new)


def rewrite_shebang(line: str, placeholder: str, target_prefix: str, platform: str) -> str:
    """The shebang ``line`` (no newline) with the prefix in place, made runnable if it cannot be.

    A line that grows beyond the kernel limit, or a prefix holding a space, cannot be executed as is:
    a python interpreter becomes the ``/bin/sh`` trampoline, anything else ``#!/usr/bin/env <name>``.
    """
    if " " in target_prefix:
        if placeholder not in line:
            return line
        return shebang_via_env(line).replace(placeholder, target_prefix)
    line = line.replace(placeholder, target_prefix)
    if not line.startswith("#!") or _fits_kernel(line, platform):
        return line
    return shebang_via_env(line)


def _fits_kernel(line: str, platform: str) -> bool:
    length = len(line.encode())
    if platform.startswith(("linux-", "android-")):
        return length <= MAX_SHEBANG_LINUX
    if platform.startswith(("osx-", "ios-")):
        return length <= MAX_SHEBANG_MACOS
    return True


def shebang_via_env(line: str) -> str:
    """A shebang that does not need the interpreter's absolute path on the ``#!`` line itself."""
    match = _SHEBANG.match(line)
    if match is None:
        return line
    path, rest = match.group(1), match.group(2)
    name = path.rsplit("/", 1)[-1]
    if _PYTHON_EXE.match(name):
        return f"#!/bin/sh\n'''exec' \"{path}\"{rest} \"$0\" \"$@\" #'''"
    return f"#!/usr/bin/env {name}{rest}"


def python_shebang(python: str) -> str:
    """The first line(s) of an entry point script run by the interpreter at absolute path ``python``."""
    if len(python) > MAX_SHEBANG_LINUX - 2 or " " in python:
        return f"#!/bin/sh\n'''exec' \"{python}\" \"$0\" \"$@\" #'''"
    return f"#!{python}"


def replace_binary_placeholder(data: bytes, placeholder: str, target_prefix: str) -> bytes:
    """Rewrite each NUL-terminated string that holds ``placeholder``, keeping every string's length.

    Within such a string every occurrence is replaced and the string is padded with NULs up to its
    old length. Raises :class:`PrefixTooLongError` if the prefix is longer than the placeholder,
    whether or not the file holds it, as rattler does.
    """
    old, new = placeholder.encode(), target_prefix.encode()
    if len(new) > len(old):
        msg = (
            f"the environment path ({len(new)} bytes) is longer than the package's binary placeholder "
            f"({len(old)} bytes): unpack into a shorter path"
        )
        raise PrefixTooLongError(msg)
    start = data.find(old)
    if start < 0:
        return data
    out = bytearray()
    done = 0
    while start >= 0:
        end = data.find(b"\0", start + len(old))
        if end < 0:
            end = len(data)
        out += data[done:start]
        segment = data[start:end]
        replaced = segment.replace(old, new)
        out += replaced
        out += b"\0" * (len(segment) - len(replaced))
        done = end
        start = data.find(old, end)
    out += data[done:]
    return bytes(out)


#: The longest first line :class:`ReplacingReader` reads to rewrite a shebang (rattler reads the whole
#: file; a streamed file whose ``#!`` line is longer than this is refused).
SHEBANG_WINDOW = 64 << 10


class ReplacingReader:
    """:func:`replace_prefix` over a stream, holding one chunk and a placeholder's length at a time.

    ``read`` returns the replaced bytes in pieces of any size (``b""`` only at the end); the result is
    the same, byte for byte, as :func:`replace_prefix` over the whole file. ``changed`` says whether a
    binary file's placeholder was replaced (its signature must then be renewed on macOS), ``head``
    holds the first four bytes written (a Mach-O magic number).
    """

    def __init__(
        self, source: Readable, placeholder: str, target_prefix: str, file_mode: str, platform: str
    ) -> None:
        prefix = prefix_for_platform(target_prefix, platform)
        self._source = source
        self._old, self._new = placeholder.encode(), prefix.encode()
        self._placeholder, self._prefix, self._platform = placeholder, prefix, platform
        self._binary = file_mode == "binary"
        self._passthrough = self._binary and is_windows(platform)
        if self._binary and not self._passthrough and len(self._new) > len(self._old):
            replace_binary_placeholder(b"", placeholder, prefix)  # raises PrefixTooLongError
        self._first_line = not self._binary and is_unix_platform(platform)
        self._carry = b""
        self._in_string = False
        self._removed = 0
        self._finished = False
        self.changed = False
        self.head = b""

    def read(self, size: int = -1) -> bytes:
        while not self._finished:
            chunk = self._source.read(size if size > 0 else 1 << 20)
            out = chunk if self._passthrough else self._process(chunk, eof=not chunk)
            self._finished = not chunk
            if out:
                if len(self.head) < 4:
                    self.head = (self.head + out)[:4]
                return out
        return b""

    def _process(self, chunk: bytes, *, eof: bool) -> bytes:
        buffer = self._carry + chunk
        self._carry = b""
        first = b""
        if self._first_line and ((len(buffer) < 2 and not eof) or buffer.startswith(b"#!")):
            end = buffer.find(b"\n")
            if end < 0 and not eof:
                if len(buffer) > SHEBANG_WINDOW:
                    msg = f"its first line is longer than {SHEBANG_WINDOW} bytes, too long to rewrite as a #! line"
                    raise InstallError(msg)
                self._carry = buffer
                return b""
            if buffer.startswith(b"#!"):
                line, buffer = (buffer, b"") if end < 0 else (buffer[:end], buffer[end:])
                text = line.decode("utf-8", errors="replace")
                first = rewrite_shebang(text, self._placeholder, self._prefix, self._platform).encode()
        self._first_line = False
        return first + (self._binary_pass(buffer, eof) if self._binary else self._text_pass(buffer, eof))

    def _text_pass(self, buffer: bytes, eof: bool) -> bytes:
        old, new = self._old, self._new
        pieces, pos = [], 0
        while (start := buffer.find(old, pos)) >= 0:
            pieces += [buffer[pos:start], new]
            pos = start + len(old)
        return self._keep_tail(buffer, pieces, pos, eof)

    def _binary_pass(self, buffer: bytes, eof: bool) -> bytes:
        old, new = self._old, self._new
        pieces, pos = [], 0
        while True:
            start = buffer.find(old, pos)
            if self._in_string:
                # The NUL-terminated string holding a placeholder ends at the next NUL: pad it there.
                nul = buffer.find(b"\0", pos)
                if nul >= 0 and (start < 0 or nul < start):
                    pieces += [buffer[pos:nul], b"\0" * self._removed]
                    self._in_string, self._removed, pos = False, 0, nul
                    continue
            if start < 0:
                break
            pieces += [buffer[pos:start], new]
            self._in_string, self.changed = True, True
            self._removed += len(old) - len(new)
            pos = start + len(old)
        out = self._keep_tail(buffer, pieces, pos, eof)
        if eof and self._in_string:
            out += b"\0" * self._removed
        return out

    def _keep_tail(self, buffer: bytes, pieces: list[bytes], pos: int, eof: bool) -> bytes:
        """Emit up to where a placeholder could still begin; keep the rest for the next chunk."""
        end = len(buffer) if eof else max(pos, len(buffer) - len(self._old) + 1)
        pieces.append(buffer[pos:end])
        self._carry = buffer[end:]
        return b"".join(pieces)
