"""JSON and JSONL record files: reading with errors that name the file, line and field; the held-out split by hash;
atomic JSONL writing. Shared by instruction records and preference pairs."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from lit_gpt5.data.streams import check_fraction
from lit_gpt5.errors import UserError
from lit_gpt5.files import not_utf8_message, read_input, write_bytes_atomic

R = TypeVar("R")


def read_json_records(
    path: str | os.PathLike, normalize: Callable[[object, str], R], kind: str = "record", flag: str = "the path"
) -> list[R]:
    """Records of a JSON array file or a JSONL file, each passed to ``normalize(record, where)``, which validates it
    and raises a ``UserError`` naming ``where`` ("FILE line N") on a bad one."""
    path = Path(path).expanduser()
    data = read_input(path, f"{kind} file", flag)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(not_utf8_message(str(path), data, err.start)) from None
    records: list[R] = []
    stripped = text.lstrip()
    if stripped.startswith("["):
        decoder = json.JSONDecoder()
        pos = len(text) - len(stripped) + 1
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(text):
                raise UserError(f"{path}: the JSON array is not closed with ']'")
            if text[pos] == "]":
                break
            line = text.count("\n", 0, pos) + 1
            try:
                record, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as err:
                raise UserError(f"{path} line {err.lineno} column {err.colno}: invalid JSON ({err.msg})") from None
            records.append(normalize(record, f"{path} line {line}"))
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                if _is_one_json_value(text):
                    raise UserError(
                        f"{path} is a single JSON {type(json.loads(text)).__name__.replace('dict', 'object')}, "
                        f"not a list of records: write a JSON array of records ([{{...}}, {{...}}]) or JSONL "
                        "(one record per line)"
                    ) from None
                raise UserError(f"{path} line {number} column {err.colno}: invalid JSON ({err.msg})") from None
            records.append(normalize(record, f"{path} line {number}"))
    if not records:
        raise UserError(f"{path} holds no records")
    return records


def _is_one_json_value(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def split_by_hash(
    records: Sequence[R], val_fraction: float, seed: int, key: Callable[[R], Sequence[str]]
) -> tuple[list[R], list[R]]:
    """Hold out exactly round(n * val_fraction) records: those whose hash (with the seed) ranks lowest.

    By hash of ``key(record)``, not by position, so the held-out set does not depend on the order of the file and
    mostly stays put when records are added.
    """
    check_fraction("val_fraction", val_fraction)

    def rank(i: int) -> bytes:
        return hashlib.sha256(json.dumps([seed, *key(records[i])], ensure_ascii=False).encode("utf-8")).digest()

    held_out = set(sorted(range(len(records)), key=rank)[: round(len(records) * val_fraction)])
    train = [r for i, r in enumerate(records) if i not in held_out]
    val = [r for i, r in enumerate(records) if i in held_out]
    if not val or not train:
        raise UserError(
            f"val_fraction={val_fraction} leaves an empty split of {len(records)} records; choose a value that "
            f"holds out at least one record and keeps at least one (e.g. {max(1, round(len(records) * 0.1))} of "
            f"{len(records)}), or pass a separate validation file"
        )
    return train, val


def jsonl_bytes(records: Sequence[dict]) -> bytes:
    """One JSON object per line, UTF-8."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def write_jsonl(path: str | os.PathLike, records: Sequence[dict]) -> None:
    """Records as JSONL (``jsonl_bytes``), written atomically (the file is whole or absent)."""
    write_bytes_atomic(path, jsonl_bytes(records))
