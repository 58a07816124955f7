"""Preference pairs for DPO: a prompt, a chosen and a rejected response, each response encoded exactly as instruction
tuning encodes one (+ ``<|endoftext|>``, labels -100 on the prompt), both sides sharing the very same prompt tokens.

Records are JSON or JSONL: ``{"prompt" | "instruction" (+ "input"), "chosen", "rejected"}``. A batch of B pairs is one
forward of 2B rows (chosen first, then rejected), so the policy runs once per batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch.utils.data import Dataset

from lit_gpt5.data.instructions import SFTDataModule, encode_response, example, fit_to_length, string_fields
from lit_gpt5.data.records import read_json_records, split_by_hash
from lit_gpt5.errors import UserError
from lit_gpt5.loss import IGNORE_INDEX
from lit_gpt5.prompts import check_template, format_prompt

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
    dropped: int = 0

    def table(self, name: str) -> str:
        return (
            f"{name}: {self.pairs} preference pairs; truncated prompts: {self.truncated_prompts}, truncated "
            f"responses: {self.truncated_responses}, dropped (a side with nothing to supervise): {self.dropped}"
        )


class PreferenceDataset(Dataset):
    """Preference records as ``chosen_input_ids``, ``chosen_labels``, ``rejected_input_ids``, ``rejected_labels``
    (LongTensors; labels -100 on the prompt) and ``index`` (the pair's position, for precomputed reference values).

    Args:
        records: dicts with ``prompt`` (or ``instruction`` and optional ``input``), ``chosen`` and ``rejected``.
        tokenizer: a tiktoken ``Encoding`` (``lit_gpt5.tokenizer.get_tokenizer()``).
        max_length: longest side in tokens. The shared prompt loses its start first, so that the longer response
            fits; only a response that cannot fit alone is cut (from its end). A pair with a side left with nothing
            to supervise is dropped and counted in ``stats.dropped``.
        template: a name in ``lit_gpt5.prompts.TEMPLATES`` or a format string, as for instruction tuning.
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


def collate_pairs(items: Sequence[dict], pad_id: int = 50256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, y, index)``: 2B rows, the B chosen sides first, then the B rejected ones, right-padded by position and
    shifted as in ``collate`` (padding targets -100); ``index`` the pairs' positions in their dataset."""
    rows = [(e["chosen_input_ids"], e["chosen_labels"]) for e in items]
    rows += [(e["rejected_input_ids"], e["rejected_labels"]) for e in items]
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for row, (i, lab) in enumerate(rows):
        ids[row, : len(i)] = i
        labels[row, : len(i)] = lab
    return ids[:, :-1], labels[:, 1:], torch.stack([e["index"] for e in items])


class PreferenceDataModule(SFTDataModule):
    """Preference pairs from JSON or JSONL files, for ``lit_gpt5.dpo.DPOLitModule``: ``SFTDataModule``'s reading,
    held-out split, checks and batching, with pairs for records.

    Args:
        train_path: preference records (a JSON array, or one JSON object per line).
        val_path: held-out records; without it, ``val_fraction`` of ``train_path`` is held out (chosen by hash of the
            prompt and chosen response, as ``SFTDataModule`` chooses).
        max_length: longest side of a pair in tokens (at most the model's positions).
        batch_size: pairs per micro-batch (per device): each forward runs 2 x batch_size sequences.
        template: prompt template name or format string; use the one the SFT model was tuned with.
        bucket_by_length: batch pairs of similar length together.
        seed: seed of the shuffling and of the held-out choice.
    """

    def __init__(
        self,
        train_path: str | None = None,
        val_path: str | None = None,
        val_fraction: float = 0.1,
        max_length: int = 512,
        batch_size: int = 8,
        val_batch_size: int | None = None,
        template: str = "alpaca",
        bucket_by_length: bool = True,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            train_path=train_path,
            val_path=val_path,
            val_fraction=val_fraction,
            max_length=max_length,
            batch_size=batch_size,
            val_batch_size=val_batch_size,
            template=template,
            bucket_by_length=bucket_by_length,
            num_workers=num_workers,
            seed=seed,
        )

    def load_records(self) -> tuple[list[dict], list[dict]]:
        """(training, held-out) pairs as dicts."""
        if not self.train_path:
            raise UserError("PreferenceDataModule needs --data.train_path (a JSON or JSONL file of preference pairs)")
        pairs = read_pairs(self.train_path)
        if self.val_path:
            return as_pair_dicts(pairs), as_pair_dicts(read_pairs(self.val_path))
        train, val = split_by_hash(pairs, self.hparams.val_fraction, self.hparams.seed, key=held_out_key)
        return as_pair_dicts(train), as_pair_dicts(val)

    def build_dataset(self, records: list[dict], tokenizer, train: bool) -> PreferenceDataset:
        return PreferenceDataset(records, tokenizer, self.max_length, self.template)

    def collate_fn(self):
        return partial(collate_pairs, pad_id=self.train_set.eot)

    def lengths(self, dataset: PreferenceDataset) -> list[int]:
        return dataset.lengths()
