"""Prefix placeholder replacement: pure ``bytes -> bytes`` functions, the way rattler's ``link.rs`` does it.

conda-build writes the build prefix (the *placeholder*) into files; installing means writing the
environment's real prefix in its place. Text files get a plain find-and-replace (with the shebang line
handled on its own, because kernels limit its length). Binary files must keep their length, so each
NUL-terminated string holding the placeholder is rewritten and padded with NULs.
"""

from __future__ import annotations

import re

from .errors import InstallError
from .platforms import is_windows

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
