"""The lean tar reader against ``tarfile``: same members, same data, in every format conda packages use."""

from __future__ import annotations

import io
import random
import tarfile
from collections.abc import Callable, Sequence

import pytest

from pixi_pack.io.tarstream import BLOCK, REGULAR, TarFormatError, TarStream

Entry = tuple[str, bytes, int, int, float, str, "bytes | None"]


def build(members: Sequence[tuple[tarfile.TarInfo, bytes | None]], fmt: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def info(name: str, kind: bytes = tarfile.REGTYPE, **attrs: object) -> tarfile.TarInfo:
    result = tarfile.TarInfo(name)
    result.type = kind
    result.mode = 0o644
    result.mtime = 1_700_000_000
    for key, value in attrs.items():
        setattr(result, key, value)
    return result


def with_tarfile(data: bytes) -> list[Entry]:
    found: list[Entry] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        for item in tar:
            content = tar.extractfile(item).read() if item.isreg() else None  # type: ignore[union-attr]
            kind = REGULAR if item.isreg() else item.type
            size = item.size if item.isreg() else 0
            found.append((item.name, kind, item.mode, size, float(item.mtime), item.linkname, content))
    return found


def with_tarstream(
    data: bytes, read: Callable[[io.BytesIO], Callable[[int], bytes]] | None = None
) -> list[Entry]:
    source = io.BytesIO(data)
    stream = TarStream(read(source) if read is not None else source.read)
    return [
        (
            e.name,
            e.type,
            e.mode,
            e.size,
            e.mtime,
            e.linkname,
            stream.read_all() if e.type == REGULAR else None,
        )
        for e in stream
    ]


def with_checksum(data: bytes) -> bytes:
    """``data`` with its first header's checksum made right again."""
    header = data[:148] + b" " * 8 + data[156:BLOCK]
    return header[:148] + b"%06o\0 " % sum(header) + data[156:]


def trickle(source: io.BytesIO) -> Callable[[int], bytes]:
    """A source that never returns more than 7 bytes at a time, like a slow pipe."""
    return lambda size: source.read(min(size, 7))


LONG = "site-packages/" + "/".join(f"folder-{i:02d}" for i in range(20)) + "/module.py"
MEMBERS = [
    (info("bin", tarfile.DIRTYPE, mode=0o755), None),
    (info("bin/tool", mode=0o755), b"#!/bin/sh\necho hi\n"),
    (info("lib/empty.txt"), b""),
    (info("lib/exactly-a-block"), b"x" * BLOCK),
    (info("lib/big.bin"), random.Random(1).randbytes(3 << 20)),
    (info("lib/libz.so", tarfile.SYMTYPE, linkname="libz.so.1.3.1"), None),
    (info("lib/hard", tarfile.LNKTYPE, linkname="bin/tool"), None),
    (info(LONG), b"print('deep')\n"),
    (info("share/link-" + "y" * 120, tarfile.SYMTYPE, linkname="../" + "z" * 150), None),
    (info("share/ünïcode-名前.txt"), b"text"),
    (info("share/old", mtime=315532799), b"old"),
    (info("share/future", mtime=2**33 + 5), b"far"),
]


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["gnu", "pax"])
@pytest.mark.parametrize("source", [None, trickle], ids=["whole", "trickle"])
def test_same_members_as_tarfile(
    fmt: int, source: Callable[[io.BytesIO], Callable[[int], bytes]] | None
) -> None:
    data = build(MEMBERS, fmt)
    expected = with_tarfile(data)
    assert with_tarstream(data, source) == expected
    assert len(expected) == len(MEMBERS)


def test_ustar_prefix_and_v7_folders() -> None:
    name = "a" * 60 + "/" + "b" * 60 + "/file.txt"  # needs ustar's prefix field
    data = build([(info(name), b"1"), (info("dir/", tarfile.AREGTYPE), None)], tarfile.USTAR_FORMAT)
    assert with_tarstream(data) == with_tarfile(data)
    entries = with_tarstream(data)
    assert entries[0][0] == name
    assert entries[1][:2] == ("dir", b"5")


def test_pax_global_header_applies_to_later_members() -> None:
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"mtime": "1234.5"}
    ) as tar:
        for name in ("one", "two"):
            item = info(name)
            item.size = 1
            tar.addfile(item, io.BytesIO(b"1"))
    entries = with_tarstream(buffer.getvalue())
    assert [e[0] for e in entries] == ["one", "two"]


def test_unread_data_is_skipped_and_partial_reads_add_up() -> None:
    big = random.Random(2).randbytes((5 << 20) + 3)
    data = build([(info("big"), big), (info("after"), b"after")], tarfile.GNU_FORMAT)
    stream = TarStream(io.BytesIO(data).read)
    entries = iter(stream)
    first = next(entries)
    assert first.size == len(big)
    assert stream.read(10) == big[:10]
    middle = b""
    while len(middle) < 2 << 20:  # each read gives at most what was asked, maybe less
        part = stream.read((2 << 20) - len(middle))
        assert part
        middle += part
    assert middle == big[10 : 10 + (2 << 20)]
    second = next(entries)  # the rest of "big" is skipped
    assert second.name == "after"
    assert stream.read() == b"after"
    assert stream.read(5) == b""
    assert next(entries, None) is None


def test_end_without_end_of_archive_blocks_is_accepted() -> None:
    data = build([(info("a"), b"a")], tarfile.GNU_FORMAT)
    assert [e[0] for e in with_tarstream(data[: 2 * BLOCK])] == ["a"]
    assert with_tarstream(b"") == []


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d[:100] + b"X" + d[101:], "bad checksum"),
        (lambda d: d[: BLOCK + 10], "unexpected end of data"),
        (lambda d: d[: BLOCK // 2], "unexpected end of data in a header"),
        (lambda d: with_checksum(d[:124] + b"99999999999\0" + d[136:]), "invalid number"),
    ],
    ids=["checksum", "data-cut", "header-cut", "size-not-octal"],
)
def test_damage_is_an_error_not_a_quiet_end(damage: Callable[[bytes], bytes], message: str) -> None:
    data = build([(info("a"), b"a" * 700), (info("b"), b"b")], tarfile.GNU_FORMAT)
    with pytest.raises(TarFormatError, match=message):
        with_tarstream(damage(data))


def test_a_damaged_second_header_is_an_error_where_tarfile_stops_quietly() -> None:
    data = bytearray(build([(info("a"), b"a"), (info("b"), b"b")], tarfile.GNU_FORMAT))
    data[2 * BLOCK + 3] ^= 0xFF  # inside the second header's name
    assert [e[0] for e in with_tarfile(bytes(data))] == ["a"]
    with pytest.raises(TarFormatError, match="bad checksum"):
        with_tarstream(bytes(data))


def test_sparse_and_oversized_extension_headers_are_refused() -> None:
    sparse = build([(info("s", pax_headers={"GNU.sparse.major": "1"}), b"x")], tarfile.PAX_FORMAT)
    with pytest.raises(TarFormatError, match="sparse"):
        with_tarstream(sparse)
    long_name = build([(info("n" * (2 << 20)), b"x")], tarfile.GNU_FORMAT)
    with pytest.raises(TarFormatError, match="extension header"):
        with_tarstream(long_name)


def test_random_trees_match_tarfile() -> None:
    rng = random.Random(3)
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        members = []
        for i in range(300):
            size = rng.choice([0, 1, 511, 512, 513, rng.randrange(1, 200_000)])
            name = f"d{rng.randrange(5)}/f{i}" + ("x" * rng.randrange(0, 60))
            members.append((info(name, mode=rng.choice([0o644, 0o755, 0o600])), rng.randbytes(size)))
        data = build(members, fmt)
        assert with_tarstream(data) == with_tarfile(data)
        assert with_tarstream(data, trickle) == with_tarfile(data)


@pytest.mark.parametrize("seed", range(20))
def test_header_sums_and_numbers_are_tarfiles(seed: int) -> None:
    """The Adler-32 byte sum is the exact sum, and the fast octal parse reads every field as tarfile does."""
    from pixi_pack.io.tarstream import _byte_sum, _number

    rng = random.Random(seed)
    for block in (bytes(BLOCK), b"\xff" * BLOCK, rng.randbytes(BLOCK)):
        assert _byte_sum(block) == sum(block)
    fields = [
        b"0000644\0",
        b"644 \0\0\0\0",
        b" 644    ",
        b"\0" * 8,
        b"0000644\0junk",
        b"00000004000\0",
        b"\x80" + (123456789).to_bytes(11, "big"),
        b"\xff" * 12,
        f"{rng.randrange(8**11):011o}\0".encode(),
        f"{rng.randrange(8**7):o}".encode().ljust(8, rng.choice([b"\0", b" "])),
    ]
    for field in fields:
        assert _number(field) == tarfile.nti(field)  # type: ignore[attr-defined]
    with pytest.raises(TarFormatError, match="invalid number"):
        _number(b"12 34\0\0\0")


def test_a_header_summed_as_signed_bytes_is_accepted() -> None:
    """Old tars summed the header as signed chars: a name with bytes above 127 still checks out."""
    header = bytearray(build([(info("caf\u00e9"), b"x")], tarfile.GNU_FORMAT)[:BLOCK])
    signed = sum(b - 256 if b > 127 else b for b in header[:148] + b" " * 8 + header[156:])
    header[148:156] = f"{signed:06o}\0 ".encode()
    data = bytes(header) + build([(info("caf\u00e9"), b"x")], tarfile.GNU_FORMAT)[BLOCK:]
    assert [e[0] for e in with_tarstream(data)] == ["caf\u00e9"]
