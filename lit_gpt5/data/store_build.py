"""Building a token store (``lit_gpt5.data.store``): tokenize documents once into it, or add to one. The command is
``lit-gpt5 data build`` (``lit_gpt5.commands.data``).

Sources: Project Gutenberg books by id (downloaded, cached and cleaned as for training), text files, folders of
``*.txt`` files, and JSONL or Parquet files of texts (a ``text`` field or column; ``--text_field``). Documents already
in the store are not tokenized again (a build adds what is new), but their text is checked: a source that changed
since it was stored is refused, not silently reused. Tokenizing runs on every core (``--workers``). Shards of
``--shard_tokens`` tokens are written one at a time, each whole or not at all, with the manifest updated after each:
an interrupted build (Ctrl-C, a full disk, a crash) resumes where it stopped when run again. One build at a time:
a second process building the same store is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lit_gpt5.data.store_manifest import (
    CLEANING_VERSION,
    FORMAT,
    LOCK,
    MANIFEST,
    builder_alive,
    check_compatible,
    read_manifest,
    token_dtype,
    tokenizer_identity,
)
from lit_gpt5.errors import UserError
from lit_gpt5.files import atomic_path, check_output_dir, sha256_file, write_bytes_atomic
from lit_gpt5.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Source:
    """A document to store: its key (what identifies it), its group, its name, and how to get its cleaned text."""

    key: str
    source: str
    name: str
    text: Callable[[], str]


def _file_text(path: Path, flag: str) -> str:
    from lit_gpt5.data.gutenberg import clean_gutenberg, read_text_file

    return clean_gutenberg(read_text_file(path, flag), require_markers=False, source=str(path))


def sources(
    book_ids=(), text_paths=(), folders=(), jsonl=(), parquet=(), text_field: str = "text", cache_dir=None
) -> Iterator[Source]:
    """Every document the arguments name, in a fixed order (the order of the store)."""
    from lit_gpt5.data.gutenberg import load_book

    for book_id in book_ids:
        yield Source(
            f"gutenberg:{book_id}", str(book_id), str(book_id), lambda b=book_id: load_book(b, cache_dir=cache_dir).text
        )
    for text_path in text_paths:
        path = Path(text_path).expanduser().resolve()
        yield Source(f"file:{path}", path.stem, path.stem, lambda p=path: _file_text(p, "--text_paths"))
    for folder in folders:
        root = Path(folder).expanduser().resolve()
        if not root.is_dir():
            raise UserError(f"--folders {root} is not a folder")
        for path in sorted(root.rglob("*.txt")):
            name = str(path.relative_to(root))
            yield Source(f"file:{path}", root.name, name, lambda p=path: _file_text(p, "--folders"))
    for file in jsonl:
        yield from _records(Path(file).expanduser().resolve(), "jsonl", text_field)
    for file in parquet:
        yield from _records(Path(file).expanduser().resolve(), "parquet", text_field)


def _records(path: Path, kind: str, field: str) -> Iterator[Source]:
    from lit_gpt5.data.gutenberg import check_is_text

    if not path.is_file():
        raise UserError(f"--{kind} {path} does not exist or is not a file")
    if kind == "jsonl":
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise UserError(f"{path} line {number}: invalid JSON ({err.msg})") from None
                text = record.get(field) if isinstance(record, dict) else None
                if not isinstance(text, str):
                    raise UserError(f"{path} line {number}: no string field {field!r}; pass --text_field")
                where = f"{path} line {number}"
                yield Source(f"jsonl:{path}#{number}", path.stem, f"{path.stem}#{number}",
                             lambda t=text, w=where: check_is_text(t, w))  # fmt: skip
        return
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("reading Parquet needs pyarrow: pip install 'lit_gpt5[parquet]' (or pyarrow)") from None
    try:
        table = pq.read_table(path)
    except Exception as err:  # noqa: BLE001 - a damaged or foreign file: one line
        raise UserError(f"{path} is not a readable Parquet file ({type(err).__name__})") from None
    if field not in table.column_names:
        raise UserError(
            f"{path} has no column {field!r} (its columns: {', '.join(table.column_names)}); pass --text_field"
        )
    for row, text in enumerate(table.column(field).to_pylist()):
        if not isinstance(text, str):
            raise UserError(f"{path} row {row}: column {field!r} is not a string")
        yield Source(f"parquet:{path}#{row}", path.stem, f"{path.stem}#{row}",
                     lambda t=text, w=f"{path} row {row}": check_is_text(t, w))  # fmt: skip


class _Lock:
    """The store's build lock: a file holding the builder's pid, created exclusively."""

    def __init__(self, path: Path) -> None:
        self.path = path / LOCK

    def __enter__(self) -> _Lock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pid = self._owner()
                if pid is not None and builder_alive(pid):
                    raise UserError(
                        f"the token store {self.path.parent} is being built by process {pid}; wait for it to finish "
                        f"(or remove {self.path} if that process is gone)"
                    ) from None
                self.path.unlink(missing_ok=True)  # a build that died: take over
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise UserError(f"cannot take the build lock {self.path}")

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def build(
    out: str | os.PathLike,
    documents: Iterator[Source],
    workers: int | None = None,
    shard_tokens: int = 64 * 2**20,
    progress: bool = True,
) -> dict:
    """Add ``documents`` to the store at ``out`` (created if missing); returns its manifest.

    Only a store is ever touched: a folder that holds files but no manifest (nor the lock of a build of ours) is
    refused, not cleaned. A new store that ends with nothing in it (every document empty, or a failure before its
    first shard) leaves no folder behind."""
    out = check_output_dir(out, "--out")
    created = not out.exists()
    if not created and any(out.iterdir()) and not (out / MANIFEST).exists() and not (out / LOCK).exists():
        raise UserError(
            f"--out {out} holds files but is not a token store (it has no manifest.json): choose a new or empty "
            "folder (a build cleans up only its own stores' leftovers)"
        )
    out.mkdir(parents=True, exist_ok=True)
    try:
        manifest = _build(out, documents, workers or os.cpu_count() or 1, shard_tokens, progress)
        if created and not manifest["documents"]:
            raise UserError(
                f"nothing was stored in {out}: every document was empty after cleaning (see above); no store was made"
            )
    except BaseException:
        if created and not (read_manifest(out) or {}).get("shards"):
            _remove_empty_store(out)  # a new store that got no shard: nothing is left behind
        raise
    return manifest


def _remove_empty_store(out: Path) -> None:
    """The folder of a new store that holds no shard: its manifest, lock and partial files, then the folder."""
    for path in [out / MANIFEST, out / LOCK, *out.glob(".*.part")]:
        path.unlink(missing_ok=True)
    if not any(out.iterdir()):
        out.rmdir()


def write_tokens(path: Path, tokens: np.ndarray) -> None:
    """Write a shard's tokens (the one place a build writes token bytes: a full disk raises here, mid-shard)."""
    tokens.tofile(path)


def _build(out: Path, documents: Iterator[Source], workers: int, shard_tokens: int, progress: bool) -> dict:
    from tqdm.auto import tqdm

    from lit_gpt5.model.tokenizer import get_tokenizer

    def write_manifest(complete: bool) -> None:
        manifest["complete"] = complete
        write_bytes_atomic(out / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())

    with _Lock(out):
        manifest = read_manifest(out)
        if manifest is None:
            manifest = {"format": FORMAT, **tokenizer_identity(), "cleaning": CLEANING_VERSION, "shards": [],
                        "documents": []}  # fmt: skip
            manifest["dtype"] = token_dtype(manifest["vocab_size"]).str
        else:
            check_compatible(out, manifest)
        # Not finished until the end: a build that stops (killed, a full disk) leaves a store that says so.
        write_manifest(complete=False)
        listed = {s["file"] for s in manifest["shards"]}
        for stale in list(out.glob("shard-*.bin")) + list(out.glob(".shard-*.part")):
            if stale.name not in listed:  # from a build that stopped before its manifest listed it
                stale.unlink()
        stored = {d["key"]: d for d in manifest["documents"]}
        dtype = np.dtype(manifest["dtype"])
        tokenizer = get_tokenizer()
        pending: list[tuple[Source, str, str]] = []  # (source, text, sha256) waiting to be tokenized
        shard: list[tuple[Source, str, np.ndarray]] = []
        shard_size = 0

        def flush() -> None:
            nonlocal shard, shard_size
            if not shard:
                return
            index = len(manifest["shards"])
            name = f"shard-{index:05d}.bin"
            with atomic_path(out / name) as tmp:
                write_tokens(tmp, np.concatenate([ids for _, _, ids in shard]).astype(dtype))
            offset = 0
            for src, sha, ids in shard:
                manifest["documents"].append({"id": len(manifest["documents"]), "key": src.key, "source": src.source,
                                              "name": src.name, "shard": index, "offset": offset,
                                              "length": len(ids), "sha256": sha})  # fmt: skip
                offset += len(ids)
            manifest["shards"].append({"file": name, "tokens": offset, "sha256": sha256_file(out / name)})
            write_manifest(complete=False)
            shard, shard_size = [], 0

        def tokenize() -> None:
            nonlocal shard_size
            if not pending:
                return
            encoded = tokenizer.encode_ordinary_batch([text for _, text, _ in pending], num_threads=workers)
            for (src, _, sha), ids in zip(pending, encoded, strict=True):
                shard.append((src, sha, np.asarray(ids, dtype=np.int64)))
                shard_size += len(ids)
                if shard_size >= shard_tokens:
                    flush()
            pending.clear()

        added = skipped = empty = 0
        pending_bytes = 0
        for src in tqdm(documents, desc="documents", unit="doc", disable=not progress):
            text = src.text()
            sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
            if src.key in stored:
                if stored[src.key]["sha256"] != sha:
                    raise UserError(
                        f"{src.key} changed since it was stored in {out}: the store would mix two versions of it; "
                        "build a new store (--out NEW_DIR)"
                    )
                skipped += 1
                continue
            if not text.strip():
                log.warning(f"lit_gpt5: {src.key} is empty after cleaning; not stored")
                empty += 1
                continue
            pending.append((src, text, sha))
            stored[src.key] = {"sha256": sha}
            pending_bytes += len(text)
            added += 1
            if pending_bytes >= 16 * 2**20:  # tokenize in batches of ~16 MB of text: all cores, bounded memory
                tokenize()
                pending_bytes = 0
        tokenize()
        flush()
        write_manifest(complete=True)
        log.info(f"lit_gpt5: {added} documents added, {skipped} already stored, {empty} empty; {out}")
    return manifest


def __getattr__(name: str) -> object:  # 0.1's `lit_gpt5.data.store_build.main` (lit_gpt5.old_paths)
    from lit_gpt5.old_paths import moved_names

    return moved_names(__name__)(name)
