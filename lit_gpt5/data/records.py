"""JSON and JSONL record files: reading with errors that name the file, line and field; the validation and test
splits by hash; atomic JSONL writing. Shared by instruction records and preference pairs."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

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


class Splits(NamedTuple):
    """Records split three ways: ``train`` to fit on, ``val`` to select on (checkpoints, learning rates), ``test`` to
    report on (empty when no test split was asked for)."""

    train: list
    val: list
    test: list


def split_by_hash(
    records: Sequence[R], val_fraction: float, seed: int, key: Callable[[R], Sequence[str]], test_fraction: float = 0.0
) -> Splits:
    """Hold out exactly round(n * val_fraction) records for validation, those whose hash (with the seed) ranks
    lowest, and the next round(n * test_fraction) for the test split.

    By hash of ``key(record)``, not by position, so the held-out sets do not depend on the order of the file and
    mostly stay put when records are added; asking for a test split leaves the validation records as they were (the
    test records come out of the training ones). ``val_fraction`` 0 holds nothing out for validation (a separate
    file gives it); ``test_fraction`` 0, nothing for the test split.
    """
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if fraction != 0:
            check_fraction(name, fraction)
    n = len(records)
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    if val_fraction + test_fraction >= 1 or (val_fraction and not n_val) or (test_fraction and not n_test):
        raise UserError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} leave an empty split of {n} records; "
            f"choose values that hold out at least one record each and keep at least one for training (e.g. "
            f"{max(1, round(n * 0.1))} of {n} is 0.1), or pass separate validation and test files"
        )

    def rank(i: int) -> bytes:
        return hashlib.sha256(json.dumps([seed, *key(records[i])], ensure_ascii=False).encode("utf-8")).digest()

    order = sorted(range(n), key=rank)
    val, test = set(order[:n_val]), set(order[n_val : n_val + n_test])
    return Splits(
        [r for i, r in enumerate(records) if i not in val and i not in test],
        [r for i, r in enumerate(records) if i in val],
        [r for i, r in enumerate(records) if i in test],
    )


def jsonl_bytes(records: Sequence[dict]) -> bytes:
    """One JSON object per line, UTF-8."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def write_jsonl(path: str | os.PathLike, records: Sequence[dict]) -> None:
    """Records as JSONL (``jsonl_bytes``), written atomically (the file is whole or absent)."""
    write_bytes_atomic(path, jsonl_bytes(records))
