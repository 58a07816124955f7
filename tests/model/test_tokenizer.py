import socket

import pytest
import tiktoken

from lit_gpt5.data.gutenberg import clean_gutenberg
from lit_gpt5.errors import UserError
from lit_gpt5.model.tokenizer import EOT, EOT_ID, get_tokenizer, parse_ranks

SAMPLES = [
    "hello world",
    "",
    "  leading spaces and trailing  \n\n\n",
    "Unicode: naïve café — “quotes” 日本語 🐍 \u200b",
    "It's they're we've I'll he'd 1234567 3.14159 $€£",
    "<|endoftext|> is plain text here",
    "\t\r\nmixed\r\nline\rends",
]


def test_known_ids():
    tok = get_tokenizer()
    assert tok.name == "gpt2"
    assert tok.n_vocab == 50257
    assert tok.encode("hello world") == [31373, 995]
    assert tok.encode(EOT, allowed_special="all") == [EOT_ID]
    assert tok.eot_token == EOT_ID


def test_same_ids_as_tiktoken_r50k_base(seeded_tiktoken_cache, book_text):
    reference = tiktoken.get_encoding("r50k_base")
    ours = get_tokenizer()
    for text in [*SAMPLES, book_text[:200_000]]:
        assert ours.encode_ordinary(text) == reference.encode_ordinary(text)
        assert ours.encode(text, allowed_special="all") == reference.encode(text, allowed_special="all")


def test_cleaned_book_token_count(book_text):
    assert len(get_tokenizer().encode_ordinary(clean_gutenberg(book_text))) == 143_690


def test_never_touches_network(monkeypatch):
    get_tokenizer.cache_clear()

    def refuse(*args, **kwargs):
        raise AssertionError("the tokenizer tried to open a socket")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert get_tokenizer().encode("offline") == [2364, 1370]


def test_damaged_ranks_are_refused(shared_dir):
    data = (shared_dir / "assets/gpt2.tiktoken").read_bytes()
    assert len(parse_ranks(data)) == 50256
    with pytest.raises(UserError, match="damaged"):
        parse_ranks(data[:-10] + b"AAAA 50255\n")
