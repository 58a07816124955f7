"""A token store: many documents tokenized once, in shards on disk, read a window at a time.

A store is a folder::

    manifest.json         format, tokenizer (name and sha256 of its ranks), cleaning version, token dtype,
                          every shard (file, tokens, sha256) and every document (id, key, source, name, shard,
                          offset, length, sha256 of its cleaned text): the index
    shard-00000.bin       the tokens of whole documents, one after the other, as raw little-endian uint16
    shard-00001.bin       (uint32 for a tokenizer with more than 65,536 ids)

Shards and the manifest are each written whole or not at all (``lit_gpt5.files.atomic_path``); the manifest is
rewritten after every shard, and a shard not in the manifest does not exist as far as readers are concerned, so an
interrupted build leaves a store that is complete up to its last shard and resumes from there
(``lit_gpt5.data.store_build``). Readers check the format, the tokenizer and every shard's size before using a store,
and read windows with ``pread``: no shard is mapped or loaded, so a training process's memory does not grow with the
corpus (only the index, a few numbers per document, is in memory).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lit_gpt5.data.segments import Segments
from lit_gpt5.errors import UserError

FORMAT = 1
# Bumped whenever cleaning (lit_gpt5.data.gutenberg.clean_gutenberg) changes what it keeps of a text: a store built
# with other cleaning is refused rather than mixed with new documents.
CLEANING_VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".build.lock"


@dataclass(frozen=True)
class Document:
    """One document of a store: where its tokens are, and where it came from."""

    id: int
    key: str  # what identifies its source: "gutenberg:829", "file:/abs/path", "jsonl:/abs/path#17"
    source: str  # its group (a Gutenberg book's id, a folder, a JSONL file): val/loss/<source> is per group
    name: str
    shard: int
    offset: int  # in tokens, within the shard
    length: int
    sha256: str  # of the cleaned text


def tokenizer_identity() -> dict:
    """The tokenizer a store is built with, as the manifest records it."""
    from lit_gpt5.model.tokenizer import RANKS_SHA256, get_tokenizer

    tokenizer = get_tokenizer()
    return {"tokenizer": tokenizer.name, "tokenizer_sha256": RANKS_SHA256, "vocab_size": tokenizer.n_vocab}


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


def read_manifest(path: Path) -> dict | None:
    """The manifest of the store at ``path``, or None where there is none; a one-line error for a damaged one."""
    manifest = path / MANIFEST
    if not manifest.exists():
        return None
    try:
        data = json.loads(manifest.read_text())
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format') if isinstance(data, dict) else '?'}")
        return data
    except (ValueError, OSError) as err:
        raise UserError(f"{manifest} is not a lit_gpt5 token store manifest ({err}); rebuild the store") from None


def check_compatible(path: Path, manifest: dict) -> None:
    """Refuse a store built with another tokenizer or other cleaning: its tokens would mean other things."""
    ours = tokenizer_identity()
    for key in ("tokenizer", "tokenizer_sha256"):
        if manifest.get(key) != ours[key]:
            raise UserError(
                f"the token store {path} was built with tokenizer {manifest.get('tokenizer')!r} "
                f"({str(manifest.get('tokenizer_sha256'))[:12]}…), not this package's {ours['tokenizer']!r}: "
                "build a new store (lit-gpt5 data build --out NEW_DIR …)"
            )
    if manifest.get("cleaning") != CLEANING_VERSION:
        raise UserError(
            f"the token store {path} was built with text cleaning version {manifest.get('cleaning')}, this package "
            f"cleans with version {CLEANING_VERSION}: build a new store"
        )


class TokenStore:
    """A store opened for reading: its documents, and their tokens by ``pread``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise UserError(f"--data.store {self.path} is not a folder; build one with lit-gpt5 data build --out DIR")
        manifest = read_manifest(self.path)
        if manifest is None:
            building = (self.path / LOCK).exists()
            why = "it is being built (or its build was interrupted)" if building else "it has no manifest.json"
            raise UserError(f"{self.path} is not a complete token store: {why}; (re)run lit-gpt5 data build")
        check_compatible(self.path, manifest)
        self.manifest = manifest
        self.dtype = np.dtype(manifest["dtype"])
        self.documents = [Document(**d) for d in manifest["documents"]]
        if not self.documents:
            raise UserError(f"the token store {self.path} holds no document; add some with lit-gpt5 data build")
        self._files: dict[int, int] = {}
        for shard in manifest["shards"]:
            file = self.path / shard["file"]
            if not file.exists():
                raise UserError(f"shard {file} of the token store is missing; rebuild the store")
            size, expected = file.stat().st_size, shard["tokens"] * self.dtype.itemsize
            if size != expected:
                raise UserError(
                    f"shard {file} is truncated or damaged ({size:,} bytes, {expected:,} expected); rebuild the store"
                )

    def _fd(self, shard: int) -> int:
        # Opened lazily, per process: a DataLoader worker opens its own descriptors after the fork.
        pid_key = (os.getpid() << 20) | shard
        if pid_key not in self._files:
            self._files[pid_key] = os.open(self.path / self.manifest["shards"][shard]["file"], os.O_RDONLY)
        return self._files[pid_key]

    def read(self, doc: Document, start: int, length: int) -> np.ndarray:
        """Tokens ``[start, start + length)`` of a document."""
        size = self.dtype.itemsize
        data = os.pread(self._fd(doc.shard), length * size, (doc.offset + start) * size)
        return np.frombuffer(data, dtype=self.dtype)

    def tokens(self, doc: Document) -> torch.Tensor:
        """A whole document's tokens (for a document you want in memory: a book)."""
        return torch.from_numpy(self.read(doc, 0, doc.length).astype(np.int64))

    def __getstate__(self) -> dict:  # open descriptors do not travel to DataLoader workers
        return {**self.__dict__, "_files": {}}


class StoreSegments(Segments):
    """Ranges ``(document, start, end)`` of a store's documents as segments, read with ``pread``."""

    def __init__(self, store: TokenStore, ranges: list[tuple[Document, int, int]]) -> None:
        self.store = store
        self.ranges = ranges
        self.lengths = torch.tensor([end - start for _, start, end in ranges], dtype=torch.long)

    def read(self, segment: int, start: int, length: int) -> torch.Tensor:
        doc, begin, _ = self.ranges[segment]
        return torch.from_numpy(self.store.read(doc, begin + start, length).astype(np.int64))


def store_split(
    store: TokenStore, block_size: int, val_fraction: float, split: str, blocks: int
) -> tuple[StoreSegments, dict[str, StoreSegments], list[str]]:
    """(training segments, held-out segments per source, each training segment's source) of every document of a
    store, each split on its own as a book is (``lit_gpt5.data.segments.split_bounds``). Documents too short to hold
    a window and a held-out part are left out, with one line saying how many."""
    from lit_gpt5.data.segments import split_bounds
    from lit_gpt5.log import get_logger

    train: list[tuple[Document, int, int]] = []
    sources: list[str] = []
    held_out: dict[str, list[tuple[Document, int, int]]] = {}
    short = 0
    for doc in store.documents:
        if doc.length < 2 * (block_size + 1):
            short += 1
            continue
        doc_train, doc_held_out = split_bounds(doc.length, val_fraction, split, blocks)
        train += [(doc, a, b) for a, b in doc_train]
        sources += [doc.source] * len(doc_train)
        held_out.setdefault(doc.source, []).extend((doc, a, b) for a, b in doc_held_out)
    if short:
        get_logger(__name__).warning(
            f"lit_gpt5: {short} of {len(store.documents)} documents of {store.path} are shorter than two windows of "
            f"{block_size + 1} tokens and are left out"
        )
    if not train:
        raise UserError(f"no document of the token store {store.path} holds two windows of {block_size + 1} tokens")
    return StoreSegments(store, train), {s: StoreSegments(store, r) for s, r in held_out.items()}, sources
