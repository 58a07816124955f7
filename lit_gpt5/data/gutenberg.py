"""Project Gutenberg books: download with retries, an atomic verified cache, and header/licence stripping."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lit_gpt5.errors import UserError
from lit_gpt5.files import (
    atomic_path,
    check_output_dir,
    not_utf8_message,
    read_input,
    sha256_file,
    write_bytes_atomic,
)
from lit_gpt5.log import get_logger

log = get_logger(__name__)

CACHE_ENV = "LIT_GPT5_CACHE"
# Replaces https://www.gutenberg.org in the download URLs: for a local mirror, or a proxy that caches it.
MIRROR_ENV = "LIT_GPT5_GUTENBERG_MIRROR"
GUTENBERG = "https://www.gutenberg.org"
# The plain-text locations Project Gutenberg has used, newest first. The first is present for every book today;
# the others are tried only when it answers 404.
URL_TEMPLATES = ("{base}/cache/epub/{id}/pg{id}.txt", "{base}/files/{id}/{id}-0.txt", "{base}/files/{id}/{id}.txt")
USER_AGENT = "lit_gpt5 (https://pypi.org/project/lit_gpt5/; book downloads for language-model training)"

# Marker lines, in all the spellings Gutenberg has used since the 1990s: "*** START OF THE PROJECT GUTENBERG EBOOK X
# ***", "***START OF THIS PROJECT GUTENBERG EBOOK X ***", the pre-2000 "*END*THE SMALL PRINT! ...*END*", and the
# "End of the Project Gutenberg EBook of X" / "End of Project Gutenberg's X" lines that older files put before the
# licence (sometimes in addition to the *** END marker, which is why the first end line after the start wins).
_START = re.compile(
    r"^[ \t]*(?:\*{3}[ \t]*START OF (?:THE|THIS) PROJECT GUTENBERG\b.*|\*END\*[ \t]*THE SMALL PRINT!.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_END = re.compile(
    r"^[ \t]*(?:\*{3}[ \t]*END OF (?:THE|THIS) PROJECT GUTENBERG\b"
    r"|END OF (?:THE |THIS )?PROJECT GUTENBERG(?:'S)?\b).*$",
    re.IGNORECASE | re.MULTILINE,
)
_CHARSET = re.compile(r"^Character set encoding:\s*([\w.:-]+)", re.IGNORECASE | re.MULTILINE)


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/lit_gpt5").expanduser()


def normalize(text: str) -> str:
    """Drop a byte-order mark and turn CRLF / CR line ends into LF, so equal books tokenize equally."""
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def clean_gutenberg(text: str, *, require_markers: bool = True, source: str = "the text") -> str:
    """Return the book between Gutenberg's START and END marker lines, without header, licence or outer blank lines.

    With ``require_markers`` a missing marker is an error: the usual cause is a truncated download or an HTML error
    page, and training on either would silently waste the run. Without it (a user's own text), text without markers
    is returned whole.
    """
    text = normalize(text)
    start = _START.search(text)
    if start is None:
        if require_markers:
            raise UserError(
                f"{source} has no '*** START OF THE PROJECT GUTENBERG EBOOK' line, so it is not a complete Gutenberg "
                "plain-text book; check the book id or URL, or pass a local file with --data.text_path"
            )
        return text.strip()
    body_start = start.end()
    if start.group(0).count("***") == 1:
        # A long title can wrap the START marker over two lines; its closing "***" is then on the next line.
        nxt = text.find("\n", body_start + 1)
        line = text[body_start + 1 : nxt if nxt != -1 else len(text)]
        if line.rstrip().endswith("***") and len(line) < 200:
            body_start = body_start + 1 + len(line)
    end = _END.search(text, body_start)
    if end is None:
        if require_markers:
            raise UserError(
                f"{source} has a START marker but no '*** END OF THE PROJECT GUTENBERG EBOOK' line: the download "
                "looks truncated; delete the cached file and run again, or pass --data.text_path"
            )
        return text[body_start:].strip()
    return text[body_start : end.start()].strip()


def decode_text(data: bytes, source: str, *, allow_declared_charset: bool = False) -> str:
    """Decode UTF-8 (with or without BOM), and check that the result is text. Gutenberg's older files declare their
    charset in the header."""
    try:
        return check_is_text(data.decode("utf-8-sig"), source)
    except UnicodeDecodeError as err:
        if allow_declared_charset and (m := _CHARSET.search(data[:20000].decode("ascii", "replace"))):
            try:
                return check_is_text(data.decode(m.group(1)), source)
            except (LookupError, UnicodeDecodeError):
                pass
        raise UserError(not_utf8_message(source, data, err.start)) from None


# Control characters no text has many of: everything below space but tab, newline, vertical tab, form feed and
# carriage return, and DEL. A tar archive (NUL padding), a file of zeros or another binary that happens to be valid
# UTF-8 is mostly these; a book has none or a handful.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
MAX_CONTROL_SHARE = 0.01


def check_is_text(text: str, source: str) -> str:
    """``text`` itself, after refusing a decoded file that is not text: more than 1% control characters. A few (up to
    1%) are warned about, with their share, and trained on."""
    count = len(_CONTROL.findall(text))
    if count:
        share = count / len(text)
        if share > MAX_CONTROL_SHARE:
            raise UserError(
                f"{source} is not text: {share:.0%} of its characters are control characters (NUL and the like), as "
                "in a binary file or an archive; pass a plain UTF-8 text file"
            )
        log.warning(f"lit_gpt5: {source} holds {count} control characters ({share:.3%} of the text); trained on as is")
    return text


def read_text_file(path: str | os.PathLike, flag: str = "--data.text_path") -> str:
    """A local text file's text, decoded and checked; errors name ``flag``, the option that gave the path."""
    data = read_input(path, "text file", flag)
    if looks_like_html(data):
        raise UserError(not_text_message(str(Path(path).expanduser()), "it starts with HTML markup"))
    return decode_text(data, str(Path(path).expanduser()))


def looks_like_html(data: bytes) -> bool:
    """Whether a file starts like an HTML page (a book's web page, an error or login page), not like a text."""
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in head[:256]


def not_text_message(source: str, why: str) -> str:
    return (
        f"{source} is an HTML page ({why}), not a plain-text book: an error or login page, or a web page that links "
        "to the text; pass the plain-text file itself (for Project Gutenberg: "
        "https://www.gutenberg.org/cache/epub/<id>/pg<id>.txt, or just --data.book_id <id>)"
    )


class NotFound(Exception):
    """The server answered 404/410: this URL will not work however often it is retried."""


def download(url: str, dest: Path, *, timeout: float = 30.0, retries: int = 3, backoff: float = 1.0) -> None:
    """Fetch ``url`` into ``dest`` atomically, retrying network errors and 5xx answers with exponential backoff.

    A transfer that ends early (connection closed, fewer bytes than Content-Length) is an error like any other:
    the partial data is deleted and never reaches ``dest``.
    """
    last: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response, atomic_path(dest) as tmp:
                if response.headers.get_content_type() == "text/html":
                    raise UserError(not_text_message(url, "Content-Type text/html"))
                expected = response.headers.get("Content-Length")
                received = 0
                with open(tmp, "wb") as f:
                    while chunk := response.read(1 << 16):
                        f.write(chunk)
                        received += len(chunk)
                if expected is not None and received != int(expected):
                    raise http.client.IncompleteRead(b"", int(expected) - received)
            return
        except urllib.error.HTTPError as err:
            if err.code in (404, 410):
                raise NotFound(f"HTTP {err.code} from {url}") from None
            if err.code < 500 and err.code != 429:
                raise UserError(f"download of {url} was refused: HTTP {err.code} {err.reason}") from None
            last = err
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as err:
            if isinstance(err, urllib.error.URLError) and url.startswith("file:"):
                raise NotFound(f"{url}: {err.reason}") from None
            last = err
    reason = getattr(last, "reason", None) or last
    raise ConnectionError(f"{url}: {reason}")


@dataclass(frozen=True)
class Book:
    """A cleaned book and where its derived files (the token cache) belong."""

    text: str
    source: str
    cache_dir: Path


def _cached_download(urls: list[str], raw: Path, *, timeout: float, retries: int) -> str:
    """Return the URL the cached ``raw`` file came from, downloading it first if needed; verifies its sha256."""
    meta_path = raw.with_suffix(".json")
    if raw.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if sha256_file(raw) == meta["sha256"]:
                return meta["url"]
        except (ValueError, KeyError, OSError):
            pass
        log.warning(f"lit_gpt5: cached {raw} does not match its recorded sha256; downloading it again")
        raw.unlink()
    failures: list[str] = []
    for url in urls:
        try:
            download(url, raw, timeout=timeout, retries=retries)
        except NotFound as err:
            failures.append(str(err))
            continue
        except ConnectionError as err:
            raw.unlink(missing_ok=True)
            raise ConnectionError(str(err)) from None
        write_bytes_atomic(meta_path, json.dumps({"url": url, "sha256": sha256_file(raw)}, indent=1).encode())
        return url
    raise NotFound("; ".join(failures))


def load_book(
    book_id: int = 829,
    url: str | None = None,
    text_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    timeout: float = 30.0,
    retries: int = 3,
) -> Book:
    """The cleaned text of a local file (``text_path``), a URL, or Project Gutenberg book ``book_id``, in that order."""
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    check_output_dir(root, "--data.cache_dir" if cache_dir else f"the cache folder ${CACHE_ENV} (or --data.cache_dir)")
    if text_path is not None:
        path = Path(text_path).expanduser()
        text = clean_gutenberg(read_text_file(path), require_markers=False, source=str(path))
        return Book(text=text, source=str(path), cache_dir=root / "local")
    if url is not None:
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https", "file"):
            raise UserError(f"--data.url must start with http://, https:// or file://, got {url!r}")
        key = hashlib.sha256(url.encode()).hexdigest()[:16]
        raw = root / "url" / key / "book.txt"
        urls = [url]
        require_markers = False
        label = url
    else:
        if not isinstance(book_id, int) or isinstance(book_id, bool) or book_id <= 0:
            raise UserError(f"book_id must be a positive Project Gutenberg number, got {book_id!r}")
        base = (os.environ.get(MIRROR_ENV) or GUTENBERG).rstrip("/")
        urls = [t.format(base=base, id=book_id) for t in URL_TEMPLATES]
        raw = root / "gutenberg" / str(book_id) / f"pg{book_id}.txt"
        require_markers = True
        label = f"Project Gutenberg book {book_id}"
    try:
        fetched_from = _cached_download(urls, raw, timeout=timeout, retries=retries)
    except NotFound as err:
        if url is not None:
            raise UserError(f"{url} was not found ({err}); check --data.url") from None
        raise UserError(
            f"{label} does not exist ({err}); check --data.book_id at https://www.gutenberg.org/ebooks/{book_id}"
        ) from None
    except ConnectionError as err:
        raise UserError(
            f"cannot download {label} ({err}) and there is no cached copy at {raw}; connect to the internet, "
            f"put the book there, or pass a local file with --data.text_path"
        ) from None
    data = raw.read_bytes()
    if looks_like_html(data):
        # Never kept: the next run would train on it, or fail the same way without downloading again.
        raw.unlink(missing_ok=True)
        raw.with_suffix(".json").unlink(missing_ok=True)
        raise UserError(not_text_message(fetched_from, "it starts with HTML markup"))
    text = decode_text(data, fetched_from, allow_declared_charset=True)
    text = clean_gutenberg(text, require_markers=require_markers, source=f"{label} ({fetched_from})")
    return Book(text=text, source=fetched_from, cache_dir=raw.parent)
