"""Files that are either whole or absent: a crash, Ctrl-C or a full disk never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it is renamed to ``dest``, on any error deleted.

    The rename is atomic on POSIX and Windows when both paths are on the same file system, which is why the
    temporary file lives in the destination's own directory. A reader therefore sees the old file or the new
    one, never a partial one, and a leftover ``*.part`` file is never mistaken for a cache entry.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def read_input(path: str | os.PathLike, what: str, flag: str) -> bytes:
    """The bytes of a file the user named with ``flag``; a one-line error if it is missing, a directory or
    unreadable."""
    from lit_gpt5.errors import UserError

    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{what} {path} does not exist; check {flag}")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a {what}; pass a file to {flag}")
    try:
        return path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}; check the file's permissions") from None


def write_bytes_atomic(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def not_utf8_message(source: str, data: bytes, offset: int) -> str:
    """The error for a file that is not UTF-8, with a conversion command for the encoding it most likely is in.

    Windows-1252 and Latin-1 agree except on bytes 0x80-0x9F, where cp1252 has printable characters (curly quotes,
    dashes) and Latin-1 has control characters; converting a cp1252 file "from latin1" silently turns its dashes
    and quotes into invisible control codes. So cp1252 is suggested when those bytes occur and decode.
    """
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"
    elif b"\x00" in data[:4096]:
        return f"{source} is not text (it holds NUL bytes: a binary file?); pass a UTF-8 text file"
    else:
        encoding = "latin1"
    if encoding == "latin1" and any(0x80 <= b <= 0x9F for b in data):
        try:
            data.decode("cp1252")
            encoding = "cp1252"
        except UnicodeDecodeError:
            encoding = "latin1"  # bytes cp1252 leaves undefined: not cp1252, and latin-1 decodes anything
    return (
        f"{source} is not UTF-8 text (invalid byte at offset {offset}); it looks like {encoding}: convert it first, "
        f"e.g. `iconv -f {encoding} -t utf-8 IN > OUT`"
    )
