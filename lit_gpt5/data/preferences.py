"""Preference pairs for DPO: a prompt, a chosen and a rejected response, each response encoded exactly as instruction
tuning encodes one (+ ``<|endoftext|>``, labels -100 on the prompt), both sides sharing the very same prompt tokens.

Records are JSON or JSONL: ``{"prompt" | "instruction" (+ "input"), "chosen", "rejected"}``. A batch of B pairs is one
forward of 2B rows (chosen first, then rejected), so the policy runs once per batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from lit_gpt5.data.batching import pack_rows, pad_rows
from lit_gpt5.data.instructions import encode_response, example, fit_to_length, string_fields
from lit_gpt5.data.record_module import RecordDataModule
from lit_gpt5.data.records import read_json_records
from lit_gpt5.errors import UserError
from lit_gpt5.model.prompts import check_template, format_prompt

Pair = tuple[str, str, str, str]  # (instruction, input, chosen, rejected)


def normalize_pair(record: object, where: str) -> Pair:
    """(instruction, input, chosen, rejected) of a preference record; a clear error naming the field otherwise."""
    if not isinstance(record, dict):
        raise UserError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    first = "instruction" if "instruction" in record else "prompt" if "prompt" in record else None
    missing = [k for k in ("chosen", "rejected") if k not in record]
    if first is None or missing:
        keys = ", ".join(sorted(record)) or "none"
        need = "'prompt' (or 'instruction')" if first is None else " and ".join(repr(k) for k in missing)
        raise UserError(
            f"{where}: a preference record needs 'prompt' (or 'instruction' and optional 'input'), 'chosen' and "
            f"'rejected'; it has no {need} (it has: {keys})"
        )
    return string_fields(record, where, first, "input" if first == "instruction" else None, "chosen", "rejected")


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """Preference records of a JSON array or JSONL file, validated; errors name the file, the line and the field."""
    return read_json_records(path, normalize_pair, "preference", "--data.train_path / --data.val_path")


def held_out_key(pair: Pair) -> tuple[str, str, str]:
    """What the held-out choice hashes: (instruction, input, chosen), as instruction tuning hashes (instruction,
    input, response). Pairs built from an instruction set are then held out exactly where its records were, so an
    SFT model is never tuned by DPO on the questions it is evaluated on."""
    return pair[:3]


def as_pair_dicts(pairs: Sequence[Pair]) -> list[dict]:
    return [{"instruction": i, "input": x, "chosen": c, "rejected": r} for i, x, c, r in pairs]


@dataclass
class PairStats:
    """What tokenizing and truncating did to a set of pairs."""

    pairs: int = 0
    truncated_prompts: int = 0
    truncated_responses: int = 0
    dropped: int = 0  # a side with nothing to supervise
    degenerate: int = 0  # chosen and rejected the same tokens: a loss of log 2 and no gradient, whatever the model

    def table(self, name: str) -> str:
        return (
            f"{name}: {self.pairs} preference pairs; truncated prompts: {self.truncated_prompts}, truncated "
            f"responses: {self.truncated_responses}, dropped: {self.why_dropped()}"
        )

    def why_dropped(self) -> str:
        return f"{self.degenerate} with chosen = rejected, {self.dropped} with a side with nothing to supervise"


class PreferenceDataset(Dataset):
    """Preference records as ``chosen_input_ids``, ``chosen_labels``, ``rejected_input_ids``, ``rejected_labels``
    (LongTensors; labels -100 on the prompt) and ``index`` (the pair's position, for precomputed reference values).

    Args:
        records: dicts with ``prompt`` (or ``instruction`` and optional ``input``), ``chosen`` and ``rejected``.
        tokenizer: a tiktoken ``Encoding`` (``lit_gpt5.model.tokenizer.get_tokenizer()``).
        max_length: longest side in tokens. The shared prompt loses its start first, so that the longer response
            fits; only a response that cannot fit alone is cut (from its end). A pair with a side left with nothing
            to supervise is dropped and counted in ``stats.dropped``; one whose two sides are the same tokens
            (chosen = rejected, or both empty) teaches nothing and is dropped and counted in ``stats.degenerate``.
        template: a name in ``lit_gpt5.model.prompts.TEMPLATES`` or a format string, as for instruction tuning.
    """

    def __init__(self, records: Sequence[dict], tokenizer, max_length: int, template: str = "alpaca") -> None:
        if not isinstance(max_length, int) or max_length < 2:
            raise UserError(f"max_length must be at least 2 tokens, got {max_length!r}")
        check_template(template)
        self.max_length, self.template, self.eot = max_length, template, tokenizer.eot_token
        self.stats = PairStats()
        self.pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for i, record in enumerate(records):
            instruction, input, chosen, rejected = normalize_pair(record, f"record {i}")
            prompt_ids = tokenizer.encode_ordinary(format_prompt(instruction, input, template))
            responses = [encode_response(tokenizer, chosen), encode_response(tokenizer, rejected)]
            prompt_ids, responses, prompt_cut, response_cut = fit_to_length(prompt_ids, responses, max_length)
            self.stats.truncated_prompts += prompt_cut
            self.stats.truncated_responses += response_cut
            if any(len(r) - (0 if prompt_ids else 1) <= 0 for r in responses):
                self.stats.dropped += 1
                continue
            if responses[0] == responses[1]:  # nothing to prefer (also after truncation to max_length)
                self.stats.degenerate += 1
                continue
            self.pairs.append((*example(prompt_ids, responses[0]), *example(prompt_ids, responses[1])))
            self.stats.pairs += 1

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        chosen_ids, chosen_labels, rejected_ids, rejected_labels = self.pairs[i]
        return {
            "chosen_input_ids": chosen_ids,
            "chosen_labels": chosen_labels,
            "rejected_input_ids": rejected_ids,
            "rejected_labels": rejected_labels,
            "index": torch.tensor(i),
        }

    def lengths(self) -> list[int]:
        return [max(len(c), len(r)) for c, _, r, _ in self.pairs]

    def collate(self, items: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, y, index)`` of ``collate_pairs``, padded with ``<|endoftext|>``."""
        return collate_pairs(items, self.eot)

    def packed_lengths(self) -> list[int]:
        """Positions a pair takes in a packed row: both sides, each its tokens but the last."""
        return [len(c) - 1 + len(r) - 1 for c, _, r, _ in self.pairs]

    def collate_packed(self, rows, width: int) -> tuple[torch.Tensor, ...]:
        """``(x, y, positions, segments, index)``: each pair's chosen and rejected side one after the other in the
        same row (``lit_gpt5.data.batching.pack_rows``), so segment 2k is pair k's chosen side and 2k + 1 its
        rejected one; ``index`` the pairs' positions in the dataset, in that order."""
        sequences = [
            [(e[f"{side}_input_ids"], e[f"{side}_labels"]) for e in row for side in ("chosen", "rejected")]
            for row in rows
        ]
        x, y, positions, segments = pack_rows(sequences, width, self.eot)
        return x, y, positions, segments, torch.stack([e["index"] for row in rows for e in row])


def collate_pairs(items: Sequence[dict], pad_id: int = 50256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, y, index)``: 2B rows, the B chosen sides first, then the B rejected ones, padded and shifted as
    instruction examples are (``lit_gpt5.data.batching.pad_rows``); ``index`` the pairs' positions in their dataset."""
    rows = [(e["chosen_input_ids"], e["chosen_labels"]) for e in items]
    rows += [(e["rejected_input_ids"], e["rejected_labels"]) for e in items]
    x, y = pad_rows(rows, pad_id)
    return x, y, torch.stack([e["index"] for e in items])


class PreferenceDataModule(RecordDataModule):
    """Preference pairs from JSON or JSONL files, for ``lit_gpt5.tuning.dpo.DPOLitModule``: a sibling of
    ``SFTDataModule`` on ``RecordDataModule``, with pairs for records. ``batch_size`` counts pairs: each forward runs
    2 x batch_size sequences; ``max_length`` bounds each side.

    Args:
        val_fraction: share of the pairs held out when there is no ``val_path``, chosen by hash of the prompt and
            chosen response, as ``SFTDataModule`` chooses by the prompt and response.
        The other arguments are ``RecordDataModule``'s: ``train_path``, ``val_path``, ``max_length``,
        ``batch_size``, ``val_batch_size``, ``template`` (use the one the SFT model was tuned with),
        ``bucket_by_length``, ``num_workers``, ``seed``.
    """

    record_kind = "preference"
    batch_kind = "pairs"  # batches (x, y, index), chosen rows then rejected rows: what DPOLitModule trains on
    held_out_fields = ("instruction", "input", "chosen")

    def __init__(self, val_fraction: float = 0.1, **kwargs) -> None:
        super().__init__(val_fraction=val_fraction, **kwargs)

    def read(self, path: str | os.PathLike) -> list[dict]:
        return as_pair_dicts(read_pairs(path))

    def build_dataset(self, records: list[dict], tokenizer, train: bool) -> PreferenceDataset:
        return PreferenceDataset(records, tokenizer, self.max_length, self.template)
