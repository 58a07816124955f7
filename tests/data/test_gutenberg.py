import json
import socket
import threading

import pytest

from lit_gpt5.data import gutenberg
from lit_gpt5.data.gutenberg import clean_gutenberg, load_book
from lit_gpt5.errors import UserError
from tests.conftest import serve_bytes

HEADER = (
    "\ufeffThe Project Gutenberg eBook of Gulliver's Travels, by Jonathan Swift\r\n\r\n"
    "This eBook is for the use of anyone anywhere in the United States and most other parts of the world at no cost"
    "\r\n\r\nTitle: Gulliver's Travels into Several Remote Nations of the World\r\n\r\nAuthor: Jonathan Swift\r\n"
    "Release date: February 1, 1997 [eBook #829]\r\n\r\nLanguage: English\r\n\r\n"
    "Character set encoding: UTF-8\r\n\r\n"
)
LICENCE = (
    "\r\n\r\nUpdated editions will replace the previous one--the old editions will be renamed.\r\n\r\n"
    "START: FULL LICENSE\r\n\r\nTHE FULL PROJECT GUTENBERG LICENSE\r\nPLEASE READ THIS BEFORE YOU DISTRIBUTE OR USE "
    "THIS WORK\r\n\r\nSection 1. General Terms of Use and Redistributing Project Gutenberg-tm electronic works\r\n"
)


def real_download(book_text: str) -> str:
    """What https://www.gutenberg.org/cache/epub/829/pg829.txt looks like: long header, CRLF, licence footer."""
    return HEADER + book_text.replace("\n", "\r\n") + LICENCE


def test_clean_real_book(book_text):
    clean = clean_gutenberg(book_text)
    assert clean.startswith("GULLIVER’S TRAVELS")
    assert clean.endswith("home in England.")
    assert "PROJECT GUTENBERG" not in clean.upper()
    # The same book as served by gutenberg.org (BOM, CRLF, header, licence) cleans to the same text.
    assert clean_gutenberg(real_download(book_text)) == clean


@pytest.mark.parametrize(
    "start,end",
    [
        ("*** START OF THE PROJECT GUTENBERG EBOOK 829 ***", "*** END OF THE PROJECT GUTENBERG EBOOK 829 ***"),
        (
            "*** START OF THIS PROJECT GUTENBERG EBOOK GULLIVER'S TRAVELS ***",
            "*** END OF THIS PROJECT GUTENBERG EBOOK GULLIVER'S TRAVELS ***",
        ),
        ("***START OF THE PROJECT GUTENBERG EBOOK GULLIVER***", "***END OF THE PROJECT GUTENBERG EBOOK GULLIVER***"),
        ("  *** start of the project gutenberg ebook 829 ***  ", "*** end of the project gutenberg ebook 829 ***"),
        (
            "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*",
            "End of the Project Gutenberg Etext of Gulliver's Travels",
        ),
        ("*** START OF THE PROJECT GUTENBERG EBOOK 829 ***", "End of Project Gutenberg's Gulliver's Travels"),
        (
            "*** START OF THIS PROJECT GUTENBERG EBOOK GULLIVER'S TRAVELS INTO\nSEVERAL REMOTE NATIONS ***",
            "*** END OF THIS PROJECT GUTENBERG EBOOK GULLIVER'S TRAVELS ***",
        ),
    ],
)
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_marker_variants(start, end, newline):
    body = "CHAPTER I.\n\nMy father had a small estate in Nottinghamshire.\n\nThe end."
    text = "\ufeffTitle: x\n\nProduced by someone\n\n" + start + "\n\n\n" + body + "\n\n\n" + end + "\n\nLICENCE text\n"
    assert clean_gutenberg(text.replace("\n", newline)) == body


def test_older_file_with_both_end_lines():
    text = (
        "*** START OF THIS PROJECT GUTENBERG EBOOK X ***\nBody.\n\n"
        "End of the Project Gutenberg EBook of X, by Y\n\n*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nlicence"
    )
    assert clean_gutenberg(text) == "Body."


def test_missing_markers():
    with pytest.raises(UserError, match="START OF THE PROJECT GUTENBERG EBOOK"):
        clean_gutenberg("<html>Service unavailable</html>")
    with pytest.raises(UserError, match="truncated"):
        clean_gutenberg("*** START OF THE PROJECT GUTENBERG EBOOK 1 ***\nhalf a book")
    # A user's own text needs no markers.
    assert clean_gutenberg("\ufeff  my own\r\nbook \n", require_markers=False) == "my own\nbook"


def test_local_text_path(tmp_path, book_path, isolated_cache):
    book = load_book(text_path=book_path)
    assert book.text == clean_gutenberg(book_path.read_text(encoding="utf-8"))
    assert book.cache_dir == isolated_cache / "local"


def test_download_by_book_id_then_cache(http_server, book_text, monkeypatch, isolated_cache):
    served = real_download(book_text).encode("utf-8")
    http_server.routes["/cache/epub/829/pg829.txt"] = serve_bytes(served)
    monkeypatch.setenv("LIT_GPT5_GUTENBERG_MIRROR", http_server.url)
    book = load_book(829)
    assert book.text == clean_gutenberg(book_text)
    raw = isolated_cache / "gutenberg" / "829" / "pg829.txt"
    assert raw.read_bytes() == served
    meta = json.loads(raw.with_suffix(".json").read_text())
    assert meta["url"] == f"{http_server.url}/cache/epub/829/pg829.txt"
    assert not [p for p in raw.parent.iterdir() if p.name.endswith(".part")]
    # Second load: from the cache, no request even though the server is gone.
    http_server.stop()
    assert load_book(829).text == book.text
    assert http_server.hits == ["/cache/epub/829/pg829.txt"]


def test_falls_back_to_files_url_on_404(http_server, book_text, monkeypatch):
    http_server.routes["/files/829/829-0.txt"] = serve_bytes(real_download(book_text).encode())
    monkeypatch.setenv("LIT_GPT5_GUTENBERG_MIRROR", http_server.url)
    assert load_book(829).text.startswith("GULLIVER’S TRAVELS")
    assert http_server.hits == ["/cache/epub/829/pg829.txt", "/files/829/829-0.txt"]


def test_retries_server_errors(http_server, book_text, monkeypatch):
    calls = []
    good = serve_bytes(real_download(book_text).encode())

    def flaky(handler):
        calls.append(1)
        if len(calls) < 3:
            handler.send_error(503)
        else:
            good(handler)

    http_server.routes["/cache/epub/829/pg829.txt"] = flaky
    monkeypatch.setenv("LIT_GPT5_GUTENBERG_MIRROR", http_server.url)
    monkeypatch.setattr(gutenberg.time, "sleep", lambda s: None)
    assert load_book(829).text.endswith("home in England.")
    assert len(calls) == 3


def test_unknown_book_id_is_a_clear_error(http_server, monkeypatch, isolated_cache):
    monkeypatch.setenv("LIT_GPT5_GUTENBERG_MIRROR", http_server.url)
    with pytest.raises(UserError, match=r"Project Gutenberg book 99999999 does not exist \(HTTP 404"):
        load_book(99999999)
    assert not list(isolated_cache.rglob("*.txt")) and not list(isolated_cache.rglob("*.part"))


def test_offline_without_cache_names_cache_and_text_path(monkeypatch, isolated_cache):
    # The no_network fixture makes every DNS lookup fail, as on a machine without a network.
    monkeypatch.setattr(gutenberg.time, "sleep", lambda s: None)
    with pytest.raises(UserError) as err:
        load_book(829)
    message = str(err.value)
    assert str(isolated_cache / "gutenberg" / "829" / "pg829.txt") in message
    assert "--data.text_path" in message


def test_interrupted_download_leaves_no_file(monkeypatch, isolated_cache):
    """A server that promises 1 MB, sends 1 KB and closes the connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    served = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            served.append(1)  # counted before the reply: the client cannot give up before its request is counted
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1024)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setenv("LIT_GPT5_GUTENBERG_MIRROR", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(gutenberg.time, "sleep", lambda s: None)
    try:
        with pytest.raises(UserError, match="cannot download"):
            load_book(829)
    finally:
        listener.close()
    assert len(served) == 4  # the first try and 3 retries
    assert [p for p in isolated_cache.rglob("*") if p.is_file()] == []


def test_corrupt_cache_is_downloaded_again(http_server, book_text, monkeypatch, isolated_cache):
    http_server.routes["/cache/epub/829/pg829.txt"] = serve_bytes(real_download(book_text).encode())
    monkeypatch.setenv("LIT_GPT5_GUTENBERG_MIRROR", http_server.url)
    load_book(829)
    raw = isolated_cache / "gutenberg" / "829" / "pg829.txt"
    raw.write_bytes(raw.read_bytes()[:5000])  # e.g. a disk that filled up after an earlier tool wrote it
    assert load_book(829).text == clean_gutenberg(book_text)
    assert len(http_server.hits) == 2


def test_user_url_http_and_file(http_server, book_text, book_path, isolated_cache):
    http_server.routes["/mybook.txt"] = serve_bytes(book_text.encode())
    assert load_book(url=f"{http_server.url}/mybook.txt").text == clean_gutenberg(book_text)
    assert load_book(url=book_path.as_uri()).text == clean_gutenberg(book_text)
    with pytest.raises(UserError, match="http://, https:// or file://"):
        load_book(url="ftp://example.org/book.txt")
    with pytest.raises(UserError, match="was not found"):
        load_book(url=f"{http_server.url}/missing.txt")


def test_local_file_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_book(text_path=tmp_path / "missing.txt")
    with pytest.raises(UserError, match="is a directory"):
        load_book(text_path=tmp_path)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Gulliver était là".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8.*iconv"):
        load_book(text_path=latin1)


def test_declared_latin1_download_is_decoded(http_server, monkeypatch):
    text = "Character set encoding: ISO-8859-1\n*** START OF THE PROJECT GUTENBERG EBOOK 5 ***\nCafé.\n*** END OF T"
    text += "HE PROJECT GUTENBERG EBOOK 5 ***\n"
    http_server.routes["/cache/epub/5/pg5.txt"] = serve_bytes(text.encode("latin-1"))
    monkeypatch.setenv("LIT_GPT5_GUTENBERG_MIRROR", http_server.url)
    assert load_book(5).text == "Café."
