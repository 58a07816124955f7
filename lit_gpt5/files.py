"""Files that are either whole or absent (a crash, Ctrl-C or a full disk never leaves a half-written file behind), and
the one place where a file-system error on an output becomes a one-line message naming the path and the fix."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lit_gpt5.errors import UserError


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it is renamed to ``dest``, on any error deleted.

    The rename is atomic on POSIX and Windows when both paths are on the same file system, which is why the
    temporary file lives in the destination's own directory. A reader therefore sees the old file or the new
    one, never a partial one, and a leftover ``*.part`` file is never mistaken for a cache entry.

    A failure to write (a full disk, an I/O error), whatever the writing library raised for it, leaves as an
    ``OSError`` that names ``dest`` (``write_failure``): one line to the user, never a traceback.
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
        os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; a file the usual way is 0666 & ~umask
        os.replace(tmp_path, dest)
    except BaseException as err:
        failure = write_failure(err, dest)  # before the partial file goes: it is what fills the disk
        tmp_path.unlink(missing_ok=True)
        if failure is not None:
            raise failure from err
        raise


# A write that fails while its file system has less than this left failed for want of space, whatever the writing
# library called it: NumPy ("N requested and M written", no path), safetensors (a SafetensorError), torch's zip
# writer (a RuntimeError, "unexpected pos") each say it their own way.
NEARLY_FULL = 1 << 20


def write_failure(err: BaseException, dest: Path) -> OSError | None:
    """The failure to write ``dest`` as an ``OSError`` naming it, or None when ``err`` is not an I/O failure (a bug, a
    Ctrl-C: those go on as they are)."""
    if not isinstance(err, Exception):
        return None
    if isinstance(err, OSError) and err.errno is not None:
        return OSError(err.errno, err.strerror or str(err), str(dest))
    if "No space left on device" in str(err) or _nearly_full(dest.parent):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dest))
    return OSError(errno.EIO, str(err), str(dest)) if isinstance(err, OSError) else None


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL
    except OSError:
        return False


def write_all_or_nothing(files: dict[Path, bytes]) -> None:
    """Several files that belong together (a training and a held-out set), each written whole to a temporary file
    beside it first and renamed only once every one is: a failure leaves none of them, new or changed."""
    written: list[tuple[Path, Path]] = []
    try:
        for dest, data in files.items():
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
            written.append((Path(tmp), dest))
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException as err:
                failure = write_failure(err, dest)
                if failure is not None:
                    raise failure from err
                raise
            os.chmod(tmp, 0o666 & ~current_umask())
    except BaseException:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, dest in written:
        os.replace(tmp, dest)


@contextlib.contextmanager
def new_folder(path: Path) -> Iterator[Path]:
    """``path`` as the folder a command writes its outputs into: created if missing, and removed again (when it was
    created here and is still empty) if the command fails, so a failed command leaves no empty folder behind."""
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if created and path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        raise


def current_umask() -> int:
    """The process's file-mode creation mask (read from /proc where there is one: setting it to read it is racy)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_input(path: str | os.PathLike, what: str, flag: str) -> bytes:
    """The bytes of a file the user named with ``flag``; a one-line error if it is missing, a directory or
    unreadable."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{what} {path} does not exist; check {flag}")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a {what}; pass a file to {flag}")
    try:
        return read_once(path)
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


def check_output_dir(path: str | os.PathLike, flag: str, shown: str | os.PathLike | None = None) -> Path:
    """``path`` as a folder outputs can be written to, checked before anything is written (and nothing created):
    a one-line error naming ``flag`` (and ``shown``, the value given, when it is a file in ``path``) if a part of it
    is a file, or the folder (or its nearest existing parent) is not writable. The folder itself is created by
    whoever writes into it."""
    path = Path(path).expanduser()
    target = Path(shown).expanduser() if shown is not None else path
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "it is" if existing == target else f"its parent {existing} is"
        raise UserError(f"{flag} {target}: {where} a file, not a folder; choose a folder")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        why = "on a read-only file system" if _read_only(existing) else "not writable"
        raise UserError(f"{flag} {target}: {existing} is {why}; choose a writable folder")
    return path


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


_STREAMS: dict[str, bytes] = {}


def read_once(path: Path) -> bytes:
    """The bytes of ``path``; a pipe or another stream that is not a regular file (``<(command)``, ``/dev/stdin``) is
    read once per process and kept, since a second read would find it empty."""
    if stat.S_ISREG(path.stat().st_mode):
        return path.read_bytes()
    key = str(path)
    if key not in _STREAMS:
        _STREAMS[key] = path.read_bytes()
    return _STREAMS[key]


def __getattr__(name: str) -> object:  # names of 0.1 that moved (lit_gpt5.old_paths)
    from lit_gpt5.old_paths import moved_names

    return moved_names(__name__)(name)
