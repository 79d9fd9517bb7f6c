"""Placeholder replacement: pure functions, checked against what rattler's link.rs produces."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixi_pack.errors import InstallError
from pixi_pack.install.prefix import (
    SHEBANG_WINDOW,
    PrefixTooLongError,
    ReplacingReader,
    python_shebang,
    replace_binary_placeholder,
    replace_prefix,
    replace_text_placeholder,
    rewrite_shebang,
    shebang_via_env,
)

OLD = "/opt/placeholder_padding_padding"
NEW = "/home/user/env"


def test_text_replaces_every_occurrence() -> None:
    data = f"a={OLD}/lib\nb={OLD}:{OLD}\n{OLD}".encode()
    out = replace_text_placeholder(data, OLD, NEW, "linux-64")
    assert out == f"a={NEW}/lib\nb={NEW}:{NEW}\n{NEW}".encode()


def test_text_without_placeholder_is_unchanged() -> None:
    data = b"nothing to see\x00\xff"
    assert replace_text_placeholder(data, OLD, NEW, "linux-64") == data


def test_text_may_grow_and_shrink() -> None:
    long_prefix = "/" + "x" * 200
    assert (
        replace_text_placeholder(f"p={OLD}".encode(), OLD, long_prefix, "linux-64")
        == f"p={long_prefix}".encode()
    )


def test_windows_text_uses_forward_slashes() -> None:
    data = f'prefix = r"{OLD}"\n'.encode()
    out = replace_prefix(data, OLD, "C:\\Users\\me\\env", "text", "win-64")
    assert out == b'prefix = r"C:/Users/me/env"\n'


def test_windows_binary_is_left_alone() -> None:
    data = f"\0{OLD}\\bin\0".encode()
    assert replace_prefix(data, OLD, "C:\\e", "binary", "win-64") == data


def test_windows_shebang_is_not_touched() -> None:
    long_prefix = "C:/" + "x" * 200
    data = f"#!{OLD}/python.exe\n".encode()
    assert (
        replace_prefix(data, OLD, long_prefix, "text", "win-64") == f"#!{long_prefix}/python.exe\n".encode()
    )


def test_binary_pads_each_c_string() -> None:
    data = f"\0\0head{OLD}/lib:{OLD}/x\0tail\0{OLD}".encode()
    out = replace_binary_placeholder(data, OLD, NEW)
    assert len(out) == len(data)
    pad = len(OLD) - len(NEW)
    expected = (
        f"\0\0head{NEW}/lib:{NEW}/x".encode() + b"\0" * (2 * pad) + b"\0tail\0" + NEW.encode() + b"\0" * pad
    )
    assert out == expected


def test_binary_placeholder_at_end_of_data() -> None:
    data = f"abc{OLD}".encode()
    out = replace_binary_placeholder(data, OLD, NEW)
    assert out == f"abc{NEW}".encode() + b"\0" * (len(OLD) - len(NEW))


def test_binary_same_length_prefix() -> None:
    same = "/" + "y" * (len(OLD) - 1)
    assert replace_binary_placeholder(f"\0{OLD}\0".encode(), OLD, same) == f"\0{same}\0".encode()


def test_binary_prefix_too_long_is_an_error_even_without_placeholder() -> None:
    with pytest.raises(PrefixTooLongError, match="shorter path"):
        replace_binary_placeholder(b"no placeholder here", "/short", "/much/longer/prefix")


def test_binary_without_placeholder_is_unchanged() -> None:
    data = bytes(range(256))
    assert replace_binary_placeholder(data, OLD, NEW) == data


def test_shebang_short_enough_is_replaced_in_place() -> None:
    data = f"#!{OLD}/bin/python3.11 -E\nprint('{OLD}')\n".encode()
    out = replace_text_placeholder(data, OLD, NEW, "linux-64")
    assert out == f"#!{NEW}/bin/python3.11 -E\nprint('{NEW}')\n".encode()


def test_long_python_shebang_becomes_sh_trampoline() -> None:
    long_prefix = "/" + "p" * 130
    data = f"#!{OLD}/bin/python3.11 -E\nimport sys\n".encode()
    out = replace_text_placeholder(data, OLD, long_prefix, "linux-64")
    expected = f"#!/bin/sh\n'''exec' \"{long_prefix}/bin/python3.11\" -E \"$0\" \"$@\" #'''\nimport sys\n"
    assert out == expected.encode()


def test_long_non_python_shebang_uses_env() -> None:
    long_prefix = "/" + "p" * 130
    out = replace_text_placeholder(f"#!{OLD}/bin/perl -w\n".encode(), OLD, long_prefix, "linux-64")
    assert out == b"#!/usr/bin/env perl -w\n"


def test_shebang_limit_is_127_bytes_on_linux_512_on_macos() -> None:
    prefix = "/" + "q" * (127 - len("#!/bin/python") - 1)
    line = f"#!{OLD}/bin/python"
    assert rewrite_shebang(line, OLD, prefix, "linux-64") == f"#!{prefix}/bin/python"
    longer = prefix + "q"
    assert rewrite_shebang(line, OLD, longer, "linux-64").startswith("#!/bin/sh\n")
    assert rewrite_shebang(line, OLD, longer, "osx-arm64") == f"#!{longer}/bin/python"


def test_prefix_with_space_uses_trampoline() -> None:
    out = rewrite_shebang(f"#!{OLD}/bin/python3", OLD, "/my env", "linux-64")
    assert out == "#!/bin/sh\n'''exec' \"/my env/bin/python3\" \"$0\" \"$@\" #'''"


def test_prefix_with_space_leaves_foreign_shebang() -> None:
    assert rewrite_shebang("#!/usr/bin/env bash", OLD, "/my env", "linux-64") == "#!/usr/bin/env bash"


def test_shebang_without_newline() -> None:
    out = replace_text_placeholder(f"#!{OLD}/bin/sh".encode(), OLD, NEW, "linux-64")
    assert out == f"#!{NEW}/bin/sh".encode()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("#!/a/bin/python", "#!/bin/sh\n'''exec' \"/a/bin/python\" \"$0\" \"$@\" #'''"),
        ("#!/a/bin/python3.12 -u", "#!/bin/sh\n'''exec' \"/a/bin/python3.12\" -u \"$0\" \"$@\" #'''"),
        ("#!  /a/bin/pythonw", "#!/usr/bin/env pythonw"),
        ("#!/a/b\\ c/bin/ruby", "#!/usr/bin/env ruby"),
        ("#!relative", "#!relative"),
    ],
)
def test_shebang_via_env(line: str, expected: str) -> None:
    assert shebang_via_env(line) == expected


def test_python_shebang_for_entry_points() -> None:
    assert python_shebang("/env/bin/python3.11") == "#!/env/bin/python3.11"
    assert python_shebang("/my env/bin/python3.11").startswith(
        "#!/bin/sh\n'''exec' \"/my env/bin/python3.11\""
    )
    long = "/" + "z" * 125
    assert python_shebang(long).startswith("#!/bin/sh\n")
    assert python_shebang(long[:-1]) == f"#!{long[:-1]}"


# --- the streamed replacement ----------------------------------------------------------------------


class _Chunked:
    """A source that hands out at most ``sizes[i]`` bytes per read, cycling through ``sizes``."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._data, self._sizes, self._pos, self._turn = data, sizes, 0, 0

    def read(self, size: int = -1) -> bytes:
        step = self._sizes[self._turn % len(self._sizes)]
        self._turn += 1
        if size > 0:
            step = min(step, size)
        piece = self._data[self._pos : self._pos + step]
        self._pos += len(piece)
        return piece


def _stream(data: bytes, mode: str, platform: str, target: str, sizes: list[int], reads: list[int]) -> bytes:
    reader = ReplacingReader(_Chunked(data, sizes), OLD, target, mode, platform)
    out, turn = [], 0
    while piece := reader.read(reads[turn % len(reads)]):
        out.append(piece)
        turn += 1
    assert reader.read() == b""
    return b"".join(out)


_PIECES = st.sampled_from(
    [OLD.encode(), OLD.encode()[:7], b"\0", b"\n", b"#!", b" ", b"x", b"/bin/python", b"\xff", b"-ab"]
)


@settings(max_examples=400, deadline=None)
@given(
    pieces=st.lists(_PIECES, max_size=40),
    mode=st.sampled_from(["text", "binary"]),
    platform=st.sampled_from(["linux-64", "osx-arm64", "win-64"]),
    target=st.sampled_from([NEW, "/a b/env", "/" + "y" * 150, "/e"]),
    sizes=st.lists(st.integers(1, 70), min_size=1, max_size=5),
    reads=st.lists(st.integers(-1, 50), min_size=1, max_size=5),
)
def test_streamed_replacement_equals_the_whole_file_one(
    pieces: list[bytes], mode: str, platform: str, target: str, sizes: list[int], reads: list[int]
) -> None:
    data = b"".join(pieces)
    try:
        expected = replace_prefix(data, OLD, target, mode, platform)
    except PrefixTooLongError:
        with pytest.raises(PrefixTooLongError):
            _stream(data, mode, platform, target, sizes, reads)
        return
    assert _stream(data, mode, platform, target, sizes, reads) == expected


def test_streamed_replacement_reports_a_changed_binary_and_its_head() -> None:
    data = b"\xcf\xfa\xed\xfe" + b"\0" * 100 + f"{OLD}/lib\0".encode() + b"z" * 100
    reader = ReplacingReader(_Chunked(data, [3]), OLD, NEW, "binary", "osx-arm64")
    while reader.read(5):
        pass
    assert reader.changed
    assert reader.head == b"\xcf\xfa\xed\xfe"
    untouched = ReplacingReader(_Chunked(b"\0" * 50, [7]), OLD, NEW, "binary", "osx-arm64")
    while untouched.read():
        pass
    assert not untouched.changed


def test_streamed_shebang_longer_than_its_window_is_refused() -> None:
    data = b"#!" + b"x" * (2 * SHEBANG_WINDOW) + b"\n"
    reader = ReplacingReader(_Chunked(data, [4096]), OLD, NEW, "text", "linux-64")
    with pytest.raises(InstallError, match="first line is longer than"):
        while reader.read(4096):
            pass
    # Just below the window, the line is rewritten as replace_prefix would.
    fits = b"#!" + f"{OLD}/bin/x ".encode() + b"a" * 1000 + b"\nbody\n"
    assert _stream(fits, "text", "linux-64", NEW, [100], [100]) == replace_prefix(
        fits, OLD, NEW, "text", "linux-64"
    )
