"""Prompts for on-policy preference tuning (``lit_gpt5.tuning.rloo``): the policy samples its own continuations of them.

Records are JSON or JSONL: ``{"prompt_ids": [token ids]}`` (exact: what ``lit-gpt5 reward pairs`` writes) or
``{"prompt": "text"}`` (tokenized with the GPT-2 BPE, ``encode_ordinary``); other fields (``book``) are kept for
reports. A batch is ``(prompts, lengths, index)``: the prompts left-padded into one (P, T) tensor, their lengths,
and their positions in the data set. Shuffled epochs, held-out prompts and exact resume are ``RecordDataModule``'s.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from lit_gpt5.data.record_module import RecordDataModule
from lit_gpt5.data.records import read_json_records
from lit_gpt5.errors import UserError


def normalize_prompt(record: object, where: str, vocab_size: int = 50257) -> dict:
    """A prompt record as ``{"prompt_ids": [...]}`` or ``{"prompt": str}`` (plus any other fields); a one-line error
    naming the field otherwise."""
    if not isinstance(record, dict):
        raise UserError(f"{where}: a prompt record must be a JSON object, got {type(record).__name__}")
    if "prompt_ids" in record:
        ids = record["prompt_ids"]
        if not isinstance(ids, list) or not ids or not all(isinstance(t, int) and 0 <= t < vocab_size for t in ids):
            raise UserError(f"{where}: 'prompt_ids' must be a non-empty list of token ids in [0, {vocab_size})")
    elif "prompt" in record:
        if not isinstance(record["prompt"], str) or not record["prompt"]:
            raise UserError(f"{where}: 'prompt' must be a non-empty string")
    else:
        keys = ", ".join(sorted(record)) or "none"
        raise UserError(f"{where}: a prompt record needs 'prompt_ids' (token ids) or 'prompt' (text); it has: {keys}")
    return record


@dataclass
class PromptStats:
    """What tokenizing did to a set of prompts (``RecordDataModule`` reports it)."""

    prompts: int = 0
    truncated: int = 0

    def table(self, name: str) -> str:
        return f"{name}: {self.prompts} prompts; truncated to --data.max_length (their end kept): {self.truncated}"

    def why_dropped(self) -> str:
        return "no prompt is dropped"


class PromptDataset(Dataset):
    """Tokenized prompts, ``max_length`` tokens at most (longer ones keep their end: what the model continues)."""

    def __init__(self, records: Sequence[dict], tokenizer, max_length: int) -> None:
        self.eot = tokenizer.eot_token
        self.prompts: list[torch.Tensor] = []
        self.stats = PromptStats()
        for record in records:
            ids = record.get("prompt_ids") or tokenizer.encode_ordinary(record["prompt"])
            if not ids:
                raise UserError(f"the prompt {record.get('prompt')!r} has no tokens")
            self.stats.truncated += len(ids) > max_length
            self.prompts.append(torch.tensor(ids[-max_length:], dtype=torch.long))
        self.stats.prompts = len(self.prompts)

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"prompt_ids": self.prompts[i], "index": torch.tensor(i)}

    def lengths(self) -> list[int]:
        return [len(p) for p in self.prompts]

    def collate(self, items: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(prompts, lengths, index)``: prompts left-padded with ``<|endoftext|>`` into (P, T)."""
        width = max(len(e["prompt_ids"]) for e in items)
        prompts = torch.full((len(items), width), self.eot, dtype=torch.long)
        for row, e in enumerate(items):
            prompts[row, width - len(e["prompt_ids"]) :] = e["prompt_ids"]
        lengths = torch.tensor([len(e["prompt_ids"]) for e in items])
        return prompts, lengths, torch.stack([e["index"] for e in items])


def unpad(prompts: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """The token lists of a batch of left-padded prompts."""
    return [row[len(row) - n :] for row, n in zip(prompts.tolist(), lengths.tolist(), strict=True)]


class PromptDataModule(RecordDataModule):
    """Prompts from JSON or JSONL files, for ``lit_gpt5.tuning.rloo.RLOOLitModule``: a sibling of ``SFTDataModule`` and
    ``PreferenceDataModule`` on ``RecordDataModule``. ``batch_size`` counts prompts (the module samples several
    continuations of each); ``max_length`` bounds a prompt.

    Args:
        val_fraction: share of the prompts held out when there is no ``val_path`` (chosen by hash of the prompt).
        The other arguments are ``RecordDataModule``'s (``template`` is not used: prompts are taken as they are).
    """

    record_kind = "prompt"
    batch_kind = "prompts"  # batches (prompts, lengths, index): what RLOOLitModule trains on
    held_out_fields = ("key",)

    def __init__(self, max_length: int = 64, val_fraction: float = 0.1, template: str = "none", **kwargs) -> None:
        super().__init__(max_length=max_length, val_fraction=val_fraction, template=template, **kwargs)

    def read(self, path: str | os.PathLike) -> list[dict]:
        records = read_json_records(path, normalize_prompt, "prompt", "--data.train_path / --data.val_path")
        return [{**r, "key": str(r.get("prompt_ids") or r["prompt"])} for r in records]

    def build_dataset(self, records: list[dict], tokenizer, train: bool) -> PromptDataset:
        return PromptDataset(records, tokenizer, self.max_length)
