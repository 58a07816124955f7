"""Books as training data: where a book comes from, its token cache, and the Gutenberg data module."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lit_gpt5.data.gutenberg import Book, load_book
from lit_gpt5.data.window_module import TokenWindowDataModule
from lit_gpt5.errors import UserError
from lit_gpt5.files import atomic_path
from lit_gpt5.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class BookSource:
    """Where a book comes from: a local file (``text_path``), a URL, or Project Gutenberg by ``book_id``, in that
    order of precedence; downloads are cached under ``cache_dir`` (default ``$LIT_GPT5_CACHE``)."""

    book_id: int = 829
    url: str | None = None
    text_path: str | None = None
    cache_dir: str | None = None

    @property
    def name(self) -> str:
        """A short name for logs and metric names: the file's stem, or the Gutenberg id."""
        if self.text_path is not None:
            return Path(self.text_path).stem
        if self.url is not None:
            return Path(self.url.rstrip("/")).stem or "url"
        return str(self.book_id)

    def load(self) -> Book:
        return load_book(self.book_id, self.url, self.text_path, self.cache_dir)

    def tokens(self) -> torch.Tensor:
        book = self.load()
        return tokenize_cached(book.text, book.cache_dir)


def tokenize_cached(text: str, cache_dir: str | os.PathLike, tokenizer=None) -> torch.Tensor:
    """Token ids of ``text`` as a uint16 tensor, cached in ``cache_dir`` keyed by the text's sha256 and the tokenizer.

    The cache is a safetensors file that records the hash of its own tokens: a damaged file is detected, rebuilt
    and never trained on.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import save_file

    from lit_gpt5.model.tokenizer import get_tokenizer

    tokenizer = tokenizer or get_tokenizer()
    text_sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    path = Path(cache_dir) / f"tokens-{text_sha[:16]}-{tokenizer.name}.safetensors"
    if path.exists():
        try:
            with safe_open(str(path), framework="pt") as f:
                meta, tokens = f.metadata() or {}, f.get_tensor("tokens")
            if (
                meta.get("text_sha256") == text_sha
                and meta.get("tokens_sha256") == hashlib.sha256(tokens.numpy().tobytes()).hexdigest()
            ):
                return tokens
        except (SafetensorError, OSError, ValueError, KeyError):
            pass
        log.warning(f"lit_gpt5: token cache {path} is damaged; rebuilding it")
    if tokenizer.n_vocab > 2**16:
        raise ValueError(f"tokenizer {tokenizer.name} has {tokenizer.n_vocab} ids, more than uint16 holds")
    ids = np.asarray(tokenizer.encode_ordinary(text), dtype=np.uint16)
    tokens = torch.from_numpy(ids)
    meta = {
        "text_sha256": text_sha,
        "tokens_sha256": hashlib.sha256(ids.tobytes()).hexdigest(),
        "tokenizer": tokenizer.name,
    }
    with atomic_path(path) as tmp:
        save_file({"tokens": tokens}, str(tmp), metadata=meta)
    return tokens


def book_sources(
    book_id: int | None = None,
    url: str | None = None,
    text_path: str | None = None,
    cache_dir: str | None = None,
    book_ids: list[int] | None = None,
    text_paths: list[str] | None = None,
) -> list[BookSource]:
    """The books a data module reads: ``text_paths`` and ``book_ids`` when given (several books), else the one book
    named by ``text_path``, ``url`` or ``book_id`` (default: 829, Gulliver's Travels)."""
    if not book_ids and not text_paths:
        return [BookSource(829 if book_id is None else book_id, url, text_path, cache_dir)]
    if url is not None or text_path is not None or book_id is not None:
        raise UserError(
            "give the books either one at a time (--data.text_path / --data.url / --data.book_id) or as lists "
            "(--data.text_paths / --data.book_ids), not both: the single one would be ignored"
        )
    sources = [BookSource(text_path=p, cache_dir=cache_dir) for p in text_paths or []]
    sources += [BookSource(book_id=i, cache_dir=cache_dir) for i in book_ids or []]
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise UserError(f"the books must have distinct names (file stems or ids), got {', '.join(names)}")
    return sources


class GutenbergDataModule(TokenWindowDataModule):
    """Project Gutenberg books (default: Gulliver's Travels, #829) as windowed training batches.

    A book comes from ``text_path`` (a local file), ``url`` (http(s):// or file://), or Project Gutenberg by
    ``book_id`` (829 when none of the three is given), cached under ``cache_dir`` (default ``$LIT_GPT5_CACHE`` or
    ``~/.cache/lit_gpt5``) and tokenized once with the GPT-2 BPE. Several books: ``book_ids`` and/or
    ``text_paths`` (not together with a single one); each is split on its own (the held-out part taken per book), no
    window crosses from one book to the next, and the validation loss is also logged per book as
    ``val/loss/<name>``. ``eval_text_paths`` / ``eval_book_ids``: books only evaluated (their held-out part, as
    ``val/loss/<name>``), never trained on and not part of ``val/loss``: how a run on one book reads on others.
    Downloading and tokenizing happen in ``prepare_data``; ``setup`` reads the cache. The other arguments are
    ``TokenWindowDataModule``'s (``train_fraction`` among them: train on the first part of each book only).
    """

    def __init__(
        self,
        book_id: int | None = None,
        url: str | None = None,
        text_path: str | None = None,
        cache_dir: str | None = None,
        book_ids: list[int] | None = None,
        text_paths: list[str] | None = None,
        eval_text_paths: list[str] | None = None,
        eval_book_ids: list[int] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(tokens=None, **kwargs)
        books = (book_id, url, text_path, book_ids, text_paths, eval_text_paths, eval_book_ids)
        if kwargs.get("store") and any(v for v in books):
            raise UserError("--data.store trains on a token store: drop the book arguments (or build them into it)")
        trained = book_sources(book_id, url, text_path, cache_dir, book_ids, text_paths)
        evaluated = [BookSource(text_path=p, cache_dir=cache_dir) for p in eval_text_paths or []]
        evaluated += [BookSource(book_id=i, cache_dir=cache_dir) for i in eval_book_ids or []]
        self.sources = trained + evaluated
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise UserError(
                "the books trained on and evaluated must have distinct names (file stems or ids), got "
                + ", ".join(names)
            )
        self.eval_only += [s.name for s in evaluated]

    def load_documents(self) -> dict[str, torch.Tensor]:
        return {source.name: source.tokens() for source in self.sources}
