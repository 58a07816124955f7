"""A token store: many documents tokenized once, in shards on disk, read a window at a time.

A store is a folder::

    manifest.json         the index (``lit_gpt5.data.store_manifest``): tokenizer, dtype, every shard and document,
                          and whether its build finished
    shard-00000.bin       the tokens of whole documents, one after the other, as raw little-endian uint16
    shard-00001.bin       (uint32 for a tokenizer with more than 65,536 ids)
    .verified.json        the shards whose sha256 was checked, with the size and time each had then

Shards and the manifest are each written whole or not at all (``lit_gpt5.files.atomic_path``); the manifest is
rewritten after every shard, and a shard not in the manifest does not exist as far as readers are concerned, so an
interrupted build leaves a store that is consistent up to its last shard and resumes from there
(``lit_gpt5.data.store_build``); it says it is not finished, and training refuses it unless told otherwise. Readers
check the manifest, the tokenizer, every shard's size and, once per shard as written (``verify``), its sha256, then
read windows with ``pread``: no shard is mapped or loaded, so a training process's memory does not grow with the
corpus (only the index, a few numbers per document, is in memory).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from lit_gpt5.data.segments import Segments
from lit_gpt5.data.store_manifest import (
    LOCK,
    Document,
    builder_alive,
    check_compatible,
    identity,
    is_complete,
    read_manifest,
)
from lit_gpt5.errors import UserError
from lit_gpt5.files import sha256_file, write_bytes_atomic
from lit_gpt5.log import get_logger

log = get_logger(__name__)

VERIFIED = ".verified.json"


class TokenStore:
    """A store opened for reading: its documents, and their tokens by ``pread``.

    Args:
        path: the store's folder.
        allow_unfinished: read a store whose build did not finish (the documents of its shards so far); refused
            otherwise, with the way to finish it.
        verify: check every shard's sha256 against the manifest, each shard once as long as its size and time are
            those it was checked with (recorded in ``.verified.json``): a whole read of the store the first time.
    """

    def __init__(self, path: str | os.PathLike, allow_unfinished: bool = False, verify: bool = False) -> None:
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
        self.complete = is_complete(self.path, manifest)
        if not self.complete and not allow_unfinished:
            owner = _lock_owner(self.path)
            building = owner is not None and builder_alive(owner)
            now = f"is being built by process {owner}" if building else "stopped before it finished"
            raise UserError(
                f"the token store {self.path} is not finished: its build {now} ({len(manifest['documents'])} "
                f"documents in {len(manifest['shards'])} shards so far); run the same lit-gpt5 data build again to "
                "finish it, or pass --data.allow_unfinished_store true to train on what it holds"
            )
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
        if verify:
            self.verify()

    @property
    def identity(self) -> str:
        """The hash of what the store holds (``lit_gpt5.data.store_manifest.identity``): a resumed run checks it."""
        return identity(self.manifest)

    @property
    def vocab_size(self) -> int:
        """The number of ids of the tokenizer the store was built with: no token of it is as large."""
        return int(self.manifest["vocab_size"])

    def verify(self, again: bool = False) -> tuple[int, float]:
        """Check each shard's sha256 against the manifest: a one-line error for a shard whose bytes changed (another
        store's tokens of the same size, a bit flipped). A shard checked before with the same size and time is not
        read again unless ``again``. Returns (bytes read, seconds)."""
        record_path = self.path / VERIFIED
        try:
            record = json.loads(record_path.read_text()) if record_path.exists() and not again else {}
        except (ValueError, OSError):
            record = {}
        checked, read, start = {}, 0, time.perf_counter()
        for shard in self.manifest["shards"]:
            file = self.path / shard["file"]
            stat = file.stat()
            seen = [stat.st_size, stat.st_mtime_ns, shard["sha256"]]
            if record.get(shard["file"]) != seen:
                read += stat.st_size
                if sha256_file(file) != shard["sha256"]:
                    raise UserError(
                        f"shard {file} of the token store is not the one its manifest lists (its sha256 differs: "
                        "rewritten or damaged since the build); rebuild the store"
                    )
            checked[shard["file"]] = seen
        seconds = time.perf_counter() - start
        if read and checked != record:
            try:
                write_bytes_atomic(record_path, (json.dumps(checked, indent=1) + "\n").encode())
            except OSError:  # a store on a read-only disk: checked again next time
                log.warning(f"lit_gpt5: cannot record the checked shards in {record_path}; they are checked each time")
        if read:
            log.info(f"lit_gpt5: checked {read / 2**20:,.0f} MiB of shards of {self.path} in {seconds:.1f} s")
        return read, seconds

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
        log.warning(
            f"lit_gpt5: {short} of {len(store.documents)} documents of {store.path} are shorter than two windows of "
            f"{block_size + 1} tokens and are left out"
        )
    if not train:
        raise UserError(f"no document of the token store {store.path} holds two windows of {block_size + 1} tokens")
    return StoreSegments(store, train), {s: StoreSegments(store, r) for s, r in held_out.items()}, sources


def _lock_owner(path: Path) -> int | None:
    try:
        return int((path / LOCK).read_text().strip())
    except (OSError, ValueError):
        return None


def __getattr__(name: str) -> object:  # names of 0.1 that moved to lit_gpt5.data.store_manifest
    from lit_gpt5.old_paths import moved_names

    return moved_names(__name__)(name)
