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

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lit_gpt5.data.batching import SFTBatches, eval_batches
from lit_gpt5.data.instructions import encode_response, example, fit_to_length, string_fields
from lit_gpt5.data.records import read_json_records, split_by_hash
from lit_gpt5.data.streams import batch_loader, check_fraction, check_positive, trainer_position
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
    truncated_prompts: int = 0
    truncated_responses: int = 0
    dropped: int = 0


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


class PreferenceDataModule(L.LightningDataModule):
    """Preference pairs from JSON or JSONL files, for ``lit_gpt5.dpo.DPOLitModule``.

    Args:
        train_path: preference records (a JSON array, or one JSON object per line).
        val_path: held-out records; without it, ``val_fraction`` of ``train_path`` is held out (chosen by hash).
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
        super().__init__()
        check_positive(batch_size=batch_size)
        if val_batch_size is not None:
            check_positive(val_batch_size=val_batch_size)
        if not isinstance(max_length, int) or max_length < 2:
            raise UserError(f"max_length must be at least 2 tokens, got {max_length!r}; raise --data.max_length")
        check_fraction("val_fraction", val_fraction)
        check_template(template)
        self.save_hyperparameters()
        self.block_size = max_length  # what the LightningModule checks against the model's positions
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.template = template
        self.train_set: PreferenceDataset | None = None
        self.val_set: PreferenceDataset | None = None

    def load_records(self) -> tuple[list[dict], list[dict]]:
        """(training, held-out) pairs as dicts."""
        hp = self.hparams
        if not hp.train_path:
            raise UserError("PreferenceDataModule needs --data.train_path (a JSON or JSONL file of preference pairs)")
        pairs = read_pairs(hp.train_path)
        if hp.val_path:
            return as_pair_dicts(pairs), as_pair_dicts(read_pairs(hp.val_path))
        train, val = split_by_hash(pairs, hp.val_fraction, hp.seed, key=held_out_key)
        return as_pair_dicts(train), as_pair_dicts(val)

    def _datasets(self) -> tuple[PreferenceDataset, PreferenceDataset]:
        from lit_gpt5.tokenizer import get_tokenizer

        train, val = self.load_records()
        tokenizer = get_tokenizer()
        sets = tuple(PreferenceDataset(r, tokenizer, self.hparams.max_length, self.template) for r in (train, val))
        for name, ds, n in (("training", sets[0], len(train)), ("validation", sets[1], len(val))):
            if len(ds) == 0:
                raise UserError(
                    f"all {n} {name} pairs were dropped: a side has no response token left within --data.max_length "
                    f"{self.hparams.max_length}; raise --data.max_length"
                )
        return sets

    def prepare_data(self) -> None:
        # Validated and tokenized before Lightning creates the run's directory; kept for setup in this process.
        self.train_set, self.val_set = self._datasets()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set, self.val_set = self._datasets()

    def _collate(self):
        return partial(collate_pairs, pad_id=self.train_set.eot)

    def train_dataloader(self) -> DataLoader:
        rank, world_size, start = trainer_position(self.trainer)
        hp = self.hparams
        batches = SFTBatches(
            self.train_set, self.batch_size, hp.seed, hp.bucket_by_length, rank, world_size, start,
            collate_fn=self._collate(), lengths=self.train_set.lengths(),
        )  # fmt: skip
        return batch_loader(batches, hp.num_workers)

    def val_dataloader(self) -> DataLoader:
        rank, world_size, _ = trainer_position(self.trainer)
        batches = eval_batches(
            self.val_set, self.val_batch_size, rank, world_size, self._collate(), self.val_set.lengths()
        )
        return batch_loader(batches, self.hparams.num_workers)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
