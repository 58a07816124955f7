"""Instruction tuning data: the loss on response tokens only, right by construction.

A record becomes ``prompt tokens + response tokens + <|endoftext|>``, with labels = -100 on every prompt token.
Prompt and response are tokenized separately and then joined, so no BPE merge crosses the boundary and the mask is
exact: the supervised tokens decode to exactly the response followed by ``<|endoftext|>``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_gpt5.data.batching import collate, pack_rows
from lit_gpt5.data.record_module import RecordDataModule
from lit_gpt5.data.records import read_json_records
from lit_gpt5.errors import UserError
from lit_gpt5.model.loss import IGNORE_INDEX
from lit_gpt5.model.prompts import check_template, format_prompt

Record = tuple[str, str, str]  # (instruction, input, response)


def normalize_record(record: object, where: str) -> Record:
    """(instruction, input, response) of an Alpaca, Dolly or prompt/response record; a clear error otherwise."""
    if not isinstance(record, dict):
        raise UserError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    if "instruction" in record:
        if "output" in record:
            first, answer, extra = "instruction", "output", "input"  # Alpaca
        elif "response" in record:
            first, answer, extra = "instruction", "response", "context"  # Dolly
        else:
            raise UserError(f"{where}: the record has 'instruction' but no 'output' (Alpaca) or 'response' (Dolly)")
    elif "prompt" in record:
        if "response" not in record:
            raise UserError(f"{where}: the record has 'prompt' but no 'response'")
        first, answer, extra = "prompt", "response", None
    else:
        keys = ", ".join(sorted(record)) or "none"
        raise UserError(
            f"{where}: a record needs 'instruction' and 'output' (Alpaca), 'instruction' and 'response' (Dolly), "
            f"or 'prompt' and 'response'; it has: {keys}"
        )
    return string_fields(record, where, first, extra, answer)


def string_fields(record: dict, where: str, first: str, extra: str | None, *rest: str) -> tuple[str, ...]:
    """``record[first]``, ``record[extra]`` (default "") and ``record[r]`` for each of ``rest``, all strings."""
    values = []
    for name in (first, extra, *rest):
        value = record.get(name) if name else None
        if name == extra and value is None:
            value = ""
        if not isinstance(value, str):
            raise UserError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
        values.append(value)
    return tuple(values)


def read_records(path: str | os.PathLike) -> list[Record]:
    """Instruction records of a JSON array file or a JSONL file, validated; errors name the file, line and field."""
    return read_json_records(path, normalize_record, "instruction", "--data.train_path / --data.val_path")


def as_dicts(records: Sequence[Record]) -> list[dict]:
    return [{"instruction": i, "input": x, "output": r} for i, x, r in records]


def fit_to_length(
    prompt_ids: list[int], responses: list[list[int]], max_length: int
) -> tuple[list[int], list[list[int]], bool, bool]:
    """Cut ``prompt + response`` to ``max_length`` for every response: the prompt loses its start first (it keeps at
    least one token, from which the first response token is predicted); only if a response alone does not fit is it
    cut, from its end. Returns (prompt, responses, prompt was cut, a response was cut)."""
    longest = max(len(r) for r in responses)
    prompt_cut = response_cut = False
    if len(prompt_ids) + longest > max_length:
        keep = max(min(len(prompt_ids), 1), max_length - longest)
        if keep < len(prompt_ids):
            prompt_ids, prompt_cut = prompt_ids[len(prompt_ids) - keep :], True
        room = max_length - len(prompt_ids)
        response_cut = any(len(r) > room for r in responses)
        responses = [r[:room] for r in responses]
    return prompt_ids, responses, prompt_cut, response_cut


def encode_response(tokenizer, text: str) -> list[int]:
    # encode_ordinary: text that looks like <|endoftext|> inside a record is text, never the special token.
    return [*tokenizer.encode_ordinary(text), tokenizer.eot_token]


def example(prompt_ids: list[int], response_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels) of one example: labels are -100 on the prompt."""
    ids = torch.tensor(prompt_ids + response_ids, dtype=torch.long)
    labels = ids.clone()
    labels[: len(prompt_ids)] = IGNORE_INDEX
    return ids, labels


@dataclass
class SFTStats:
    """What tokenizing and truncating did to a set of records."""

    prompt_lengths: list[int] = field(default_factory=list)
    response_lengths: list[int] = field(default_factory=list)  # including <|endoftext|>
    truncated_prompts: int = 0
    truncated_responses: int = 0
    dropped: int = 0

    def why_dropped(self) -> str:
        return f"{self.dropped} with no response token left within max_length"

    def table(self, name: str) -> str:
        def row(label: str, values: list[int]) -> str:
            a = np.asarray(values or [0])
            return f"  {label:<9}{a.mean():>8.1f}{np.percentile(a, 50):>8.0f}{np.percentile(a, 90):>8.0f}{a.max():>8d}"

        prompts, responses = sum(self.prompt_lengths), sum(self.response_lengths)
        share = responses / max(1, prompts + responses)
        return "\n".join(
            [
                f"{name}: {len(self.prompt_lengths)} examples (tokens per example)",
                f"  {'':<9}{'mean':>8}{'p50':>8}{'p90':>8}{'max':>8}",
                row("prompt", self.prompt_lengths),
                row("response", self.response_lengths),
                f"  supervised share of tokens: {share:.1%}; truncated prompts: {self.truncated_prompts}, "
                f"truncated responses: {self.truncated_responses}, dropped (nothing left to supervise): {self.dropped}",
            ]
        )


class SFTDataset(Dataset):
    """Instruction records as ``{"input_ids", "labels"}`` LongTensors, labels = -100 on every prompt token.

    Args:
        records: dicts in Alpaca (``instruction``, optional ``input``, ``output``), Dolly (``instruction``,
            ``context``, ``response``) or ``prompt``/``response`` form.
        tokenizer: a tiktoken ``Encoding`` (``lit_gpt5.model.tokenizer.get_tokenizer()``).
        max_length: longest example in tokens. A longer one loses the start of its prompt first; only if the
            response and ``<|endoftext|>`` alone do not fit is the response cut (from its end). An example with no
            supervised token left is dropped and counted in ``stats.dropped``.
        template: a name in ``lit_gpt5.model.prompts.TEMPLATES`` or a format string with ``{instruction}`` (and
            ``{input}``).
        mask_prompt: labels -100 on the prompt (the default, and the point); False supervises the prompt too, for
            comparing the two.
    """

    def __init__(
        self, records: Sequence[dict], tokenizer, max_length: int, template: str = "alpaca", mask_prompt: bool = True
    ) -> None:
        if not isinstance(max_length, int) or max_length < 2:
            raise UserError(f"max_length must be at least 2 tokens, got {max_length!r}")
        check_template(template)
        self.max_length, self.template, self.mask_prompt = max_length, template, mask_prompt
        self.eot = tokenizer.eot_token
        self.stats = SFTStats()
        self.examples: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i, record in enumerate(records):
            instruction, input, response = normalize_record(record, f"record {i}")
            prompt_ids = tokenizer.encode_ordinary(format_prompt(instruction, input, template))
            self._add(prompt_ids, encode_response(tokenizer, response))

    def _add(self, prompt_ids: list[int], response_ids: list[int]) -> None:
        prompt_ids, (response_ids,), prompt_cut, response_cut = fit_to_length(
            prompt_ids, [response_ids], self.max_length
        )
        self.stats.truncated_prompts += prompt_cut
        self.stats.truncated_responses += response_cut
        # Labels are shifted by one in the loss: token t is predicted from tokens < t, so with an empty prompt the
        # first response token would have nothing to be predicted from.
        if len(response_ids) - (0 if prompt_ids else 1) <= 0:
            self.stats.dropped += 1
            return
        ids, labels = example(prompt_ids, response_ids)
        if not self.mask_prompt:
            labels = ids.clone()
        self.examples.append((ids, labels))
        self.stats.prompt_lengths.append(len(prompt_ids))
        self.stats.response_lengths.append(len(response_ids))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids, labels = self.examples[i]
        return {"input_ids": ids, "labels": labels}

    def lengths(self) -> list[int]:
        return [len(ids) for ids, _ in self.examples]

    def collate(self, items) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``lit_gpt5.data.batching.collate``, padded with ``<|endoftext|>``."""
        return collate(items, self.eot)

    def packed_lengths(self) -> list[int]:
        """Positions each example takes in a packed row (its tokens but the last, which is only a target)."""
        return [len(ids) - 1 for ids, _ in self.examples]

    def collate_packed(self, rows, width: int) -> tuple[torch.Tensor, ...]:
        """``(x, y, positions, segments)`` of rows of examples (``lit_gpt5.data.batching.pack_rows``)."""
        return pack_rows([[(e["input_ids"], e["labels"]) for e in row] for row in rows], width, self.eot)


class SFTDataModule(RecordDataModule):
    """Instruction tuning data from JSON or JSONL files of Alpaca, Dolly or prompt/response records.

    Args:
        mask_prompt: loss on the response only (the default); False trains on the prompt tokens too (the held-out
            loss stays on responses only, so the two compare).
        The other arguments are ``RecordDataModule``'s: ``train_path``, ``val_path``, ``val_fraction`` (0.05),
        ``max_length``, ``batch_size``, ``val_batch_size``, ``template``, ``bucket_by_length``, ``num_workers``,
        ``seed``.
    """

    record_kind = "instruction"
    batch_kind = "tokens"  # batches (x, y), labels -100 on the prompt: what GPTLitModule trains on
    # The held-out choice hashes (instruction, input, response), as PreferenceDataModule hashes (instruction,
    # input, chosen): pairs built from an instruction set are held out exactly where its records were.
    held_out_fields = ("instruction", "input", "output")

    def __init__(self, mask_prompt: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mask_prompt = mask_prompt

    def read(self, path: str | os.PathLike) -> list[dict]:
        return as_dicts(read_records(path))

    def build_dataset(self, records: list[dict], tokenizer, train: bool) -> SFTDataset:
        # Held-out loss is on responses only in every case, so runs with and without prompt masking compare.
        return SFTDataset(records, tokenizer, self.max_length, self.template, self.mask_prompt or not train)
