"""A token store's manifest (``manifest.json``): what it must hold, read and checked before anything trusts it.

The manifest is the store's index: the format, the tokenizer (name and sha256 of its ranks), the cleaning version,
the token dtype, every shard (file, tokens, sha256), every document (id, key, source, name, shard, offset, length,
sha256 of its cleaned text), and whether the build that wrote it finished (``complete``). Readers refuse a manifest
that is not one in a single line naming the store and the field or document at fault, never a ``KeyError`` or a
read past a shard's end.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from lit_gpt5.errors import UserError

FORMAT = 1
# Bumped whenever cleaning (lit_gpt5.data.gutenberg.clean_gutenberg) changes what it keeps of a text: a store built
# with other cleaning is refused rather than mixed with new documents.
CLEANING_VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".build.lock"
DTYPES = ("<u2", "<u4")


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


def token_dtype(vocab_size: int) -> np.dtype:
    """The dtype of a store's tokens: 16 bits while the vocabulary fits, else 32."""
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


def builder_alive(pid: int) -> bool:
    """Whether the process holding a store's build lock still runs (a lock of a process that is gone is stale)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def tokenizer_identity() -> dict:
    """The tokenizer a store is built with, as the manifest records it."""
    from lit_gpt5.model.tokenizer import RANKS_SHA256, get_tokenizer

    tokenizer = get_tokenizer()
    return {"tokenizer": tokenizer.name, "tokenizer_sha256": RANKS_SHA256, "vocab_size": tokenizer.n_vocab}


def read_manifest(path: Path) -> dict | None:
    """The manifest of the store at ``path``, checked (``check_manifest``), or None where there is none."""
    manifest = path / MANIFEST
    if not manifest.exists():
        return None
    try:
        data = json.loads(manifest.read_text())
    except (ValueError, OSError) as err:
        raise UserError(f"{manifest} is not a lit_gpt5 token store manifest ({err}); rebuild the store") from None
    check_manifest(path, data)
    return data


def _need(where: str, value: object, kind: type | tuple[type, ...], what: str) -> None:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise UserError(f"{where}: {what}; rebuild the store (lit-gpt5 data build --out NEW_DIR …)")


def check_manifest(path: Path, data: object) -> None:
    """A one-line error for a manifest that lacks a field, holds a field of the wrong kind, or lists a document that
    does not lie within its shard."""
    where = f"the token store {path}'s manifest"
    _need(where, data, dict, "not a JSON object")
    if data.get("format") != FORMAT:
        raise UserError(f"{where}: format {data.get('format')!r}, not {FORMAT}; rebuild the store")
    for key, kind in (("tokenizer", str), ("tokenizer_sha256", str), ("cleaning", int), ("dtype", str),
                      ("vocab_size", int), ("shards", list), ("documents", list)):  # fmt: skip
        if key not in data:
            raise UserError(f"{where} has no {key!r}; rebuild the store (lit-gpt5 data build --out NEW_DIR …)")
        _need(where, data[key], kind, f"{key!r} is not a{'n' if kind is int else ''} {kind.__name__}")
    if data["dtype"] not in DTYPES:
        raise UserError(f"{where}: dtype {data['dtype']!r} is not one of {', '.join(DTYPES)}; rebuild the store")
    if "complete" in data:
        _need(where, data["complete"], bool, "'complete' is not true or false")
    sizes = []
    for i, shard in enumerate(data["shards"]):
        _need(where, shard, dict, f"shard {i} is not a JSON object")
        for key, kind in (("file", str), ("tokens", int), ("sha256", str)):
            if key not in shard:
                raise UserError(f"{where}: shard {i} has no {key!r}; rebuild the store")
            _need(where, shard[key], kind, f"shard {i}'s {key!r} is not a{'n' if kind is int else ''} {kind.__name__}")
        if shard["tokens"] < 0 or Path(shard["file"]).name != shard["file"]:
            raise UserError(f"{where}: shard {i} ({shard['file']!r}, {shard['tokens']} tokens) is not a shard")
        sizes.append(shard["tokens"])
    types = {f.name: (int if f.type in ("int", int) else str) for f in fields(Document)}
    for i, doc in enumerate(data["documents"]):
        _need(where, doc, dict, f"document {i} is not a JSON object")
        for key, kind in types.items():
            if key not in doc:
                raise UserError(f"{where}: document {i} has no {key!r}; rebuild the store")
            _need(where, doc[key], kind, f"document {i}'s {key!r} is not a{'n' if kind is int else ''} {kind.__name__}")
        if not 0 <= doc["shard"] < len(sizes):
            raise UserError(f"{where}: document {i} ({doc['key']}) is in shard {doc['shard']}, which it does not list")
        if doc["offset"] < 0 or doc["length"] < 0 or doc["offset"] + doc["length"] > sizes[doc["shard"]]:
            raise UserError(
                f"{where}: document {i} ({doc['key']}, offset {doc['offset']}, {doc['length']} tokens) runs past "
                f"the {sizes[doc['shard']]} tokens of its shard {doc['shard']}; rebuild the store"
            )


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


def is_complete(path: Path, manifest: dict) -> bool:
    """Whether the build that wrote the manifest finished. Stores built before ``complete`` was recorded count as
    finished unless a build lock is still there (a build that was killed leaves it)."""
    if "complete" in manifest:
        return manifest["complete"]
    return not (path / LOCK).exists()


def identity(manifest: dict) -> str:
    """What a run trained on, as one hash: the tokenizer, the token dtype and every document (key, sha256 of its
    text, tokens) in the store's order. A document added, removed or changed gives another identity."""
    docs = [(d["key"], d["sha256"], d["length"]) for d in manifest["documents"]]
    record = [manifest["tokenizer_sha256"], manifest["dtype"], docs]
    return hashlib.sha256(json.dumps(record).encode()).hexdigest()
