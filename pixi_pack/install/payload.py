"""The check of a self-extracting file's payload against ``--payload-sha256``, beside the work that reads it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from pixi_pack.errors import IntegrityError, PixiPackError
from pixi_pack.io.hashing import Digests, check_digests, hash_file_range
from pixi_pack.models import UnpackOptions


@contextmanager
def payload_checked(path: Path, options: UnpackOptions) -> Iterator[None]:
    """Check the payload of a self-extracting file against ``--payload-sha256`` while the body runs.

    The payload is hashed in a thread beside the body, which reads and installs from it (hashlib and
    file reads let other threads run), instead of in a pass before anything starts. Leaving the context
    normally means the digest matched; when the body fails and the digest does not match, the mismatch
    is raised (from the body's error), as it is the cause. Without ``--payload-sha256``, does nothing.
    """
    if not options.payload_sha256:
        yield
        return
    if path.is_dir():
        msg = f"--payload-sha256 checks the tar of a self-extracting file, and {path} is a folder"
        raise PixiPackError(msg)
    offset = options.payload_offset
    length = path.stat().st_size - offset if options.payload_length is None else options.payload_length
    stop = threading.Event()
    with ThreadPoolExecutor(1, thread_name_prefix="pixi-unpack-payload") as pool:
        hashing = pool.submit(hash_file_range, path, offset, length, stop=stop)
        # The thread ends as soon as the digest is made, so the install may fork its workers after.
        pool.shutdown(wait=False)
        try:
            yield
        except Exception as exc:
            mismatch = _payload_mismatch(hashing, path, options.payload_sha256, length)
            if mismatch is not None:
                raise mismatch from exc
            raise
        except BaseException:
            stop.set()
            raise
        mismatch = _payload_mismatch(hashing, path, options.payload_sha256, length)
        if mismatch is not None:
            raise mismatch


def _payload_mismatch(hashing: Future[Digests], path: Path, sha256: str, length: int) -> PixiPackError | None:
    """Waits for the payload's digest: the error to raise if it is not the expected one, else ``None``."""
    try:
        digests = hashing.result()
    except OSError as exc:
        return PixiPackError(f"could not read {path} to check its sha256: {exc}")
    try:
        check_digests(digests, what=f"the pack inside {path}", sha256=sha256, size=length)
    except IntegrityError as exc:
        return IntegrityError(f"{exc}: the file is damaged or incomplete, download it again")
    return None
