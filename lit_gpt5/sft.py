"""Instruction tuning data: the loss on response tokens only, right by construction.

A record becomes ``prompt tokens + response tokens + <|endoftext|>``, with labels = -100 on every prompt token.
Prompt and response are tokenized separately and then joined, so no BPE merge crosses the boundary and the mask is
exact: the supervised tokens decode to exactly the response followed by ``<|endoftext|>``.

    python -m lit_gpt5.sft show --train_path data.jsonl      # what the loss sees, supervised tokens marked
    python -m lit_gpt5.sft gulliver --out gulliver/          # the built-in instruction set, as JSONL
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from lit_gpt5.data import batch_loader, trainer_position, worker_shard
from lit_gpt5.errors import UserError
from lit_gpt5.loss import IGNORE_INDEX

# Templates are data: a name -> a format string with {instruction} and {input}. When a record has no input and
# "<name>_no_input" exists, that one is used (Alpaca words its preamble differently without an input).
TEMPLATES: dict[str, str] = {
    "alpaca": (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
    ),
    "alpaca_no_input": (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:\n"
    ),
    # Short: for small models and short contexts, where Alpaca's 30-token preamble is a large share of the window.
    "plain": "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
    "plain_no_input": "### Instruction:\n{instruction}\n\n### Response:\n",
    # The record's prompt as it is, for data that is already formatted.
    "none": "{instruction}{input}",
}
SCHEMAS = (
    ("instruction", "output", "input"),  # Alpaca
    ("instruction", "response", "context"),  # Dolly
    ("prompt", "response", None),
)


def format_prompt(instruction: str, input: str = "", template: str = "alpaca") -> str:
    """The prompt text of an instruction (and optional input) in a named template, or a literal format string."""
    if template in TEMPLATES:
        fmt = TEMPLATES.get(f"{template}_no_input") if not input else None
        fmt = fmt or TEMPLATES[template]
    elif "{instruction}" in template:
        fmt = template
    else:
        raise UserError(
            f"unknown template {template!r}; use one of {', '.join(t for t in TEMPLATES if '_no_input' not in t)} "
            "or a format string containing {instruction}"
        )
    return fmt.format(instruction=instruction, input=input)


def normalize_record(record: object, where: str) -> tuple[str, str, str]:
    """(instruction, input, response) of an Alpaca, Dolly or prompt/response record; a clear error otherwise."""
    if not isinstance(record, dict):
        raise UserError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    if "instruction" in record:
        if "output" in record:
            first, answer, extra = SCHEMAS[0]
        elif "response" in record:
            first, answer, extra = SCHEMAS[1]
        else:
            raise UserError(f"{where}: the record has 'instruction' but no 'output' (Alpaca) or 'response' (Dolly)")
    elif "prompt" in record:
        if "response" not in record:
            raise UserError(f"{where}: the record has 'prompt' but no 'response'")
        first, answer, extra = SCHEMAS[2]
    else:
        keys = ", ".join(sorted(record)) or "none"
        raise UserError(
            f"{where}: a record needs 'instruction' and 'output' (Alpaca), 'instruction' and 'response' (Dolly), "
            f"or 'prompt' and 'response'; it has: {keys}"
        )
    values = []
    for name in (first, answer, extra):
        value = record.get(name) if name else None
        if name == extra and value is None:
            value = ""
        if not isinstance(value, str):
            raise UserError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
        values.append(value)
    return values[0], values[2], values[1]


def read_records(path: str | os.PathLike) -> list[tuple[str, str, str]]:
    """Records of a JSON array file or a JSONL file, validated; errors name the file, the line and the field."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"instruction file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 (invalid byte at offset {err.start})") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from None
    records: list[tuple[str, str, str]] = []
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
            records.append(normalize_record(record, f"{path} line {line}"))
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path} line {number} column {err.colno}: invalid JSON ({err.msg})") from None
            records.append(normalize_record(record, f"{path} line {number}"))
    if not records:
        raise UserError(f"{path} holds no records")
    return records


@dataclass
class SFTStats:
    """What tokenizing and truncating did to a set of records."""

    prompt_lengths: list[int] = field(default_factory=list)
    response_lengths: list[int] = field(default_factory=list)  # including <|endoftext|>
    truncated_prompts: int = 0
    truncated_responses: int = 0
    dropped: int = 0

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
        tokenizer: a tiktoken ``Encoding`` (``lit_gpt5.tokenizer.get_tokenizer()``).
        max_length: longest example in tokens. A longer one loses the start of its prompt first; only if the
            response and ``<|endoftext|>`` alone do not fit is the response cut (from its end). An example with no
            supervised token left is dropped and counted in ``stats.dropped``.
        template: a name in ``TEMPLATES`` or a format string with ``{instruction}`` (and ``{input}``).
    """

    def __init__(self, records: Sequence[dict], tokenizer, max_length: int, template: str = "alpaca") -> None:
        if max_length < 2:
            raise UserError(f"max_length must be at least 2 tokens, got {max_length}")
        self.max_length, self.template = max_length, template
        self.eot = tokenizer.eot_token
        self.stats = SFTStats()
        self.examples: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i, record in enumerate(records):
            instruction, input, response = normalize_record(record, f"record {i}")
            self._add(tokenizer, format_prompt(instruction, input, template), response)

    def _add(self, tokenizer, prompt: str, response: str) -> None:
        # encode_ordinary: text that looks like <|endoftext|> inside a record is text, never the special token.
        prompt_ids = tokenizer.encode_ordinary(prompt)
        response_ids = [*tokenizer.encode_ordinary(response), self.eot]
        if len(prompt_ids) + len(response_ids) > self.max_length:
            # The prompt keeps at least one token: the first response token is predicted from it.
            keep = max(min(len(prompt_ids), 1), self.max_length - len(response_ids))
            if keep < len(prompt_ids):
                prompt_ids = prompt_ids[len(prompt_ids) - keep :]
                self.stats.truncated_prompts += 1
            if len(prompt_ids) + len(response_ids) > self.max_length:
                response_ids = response_ids[: self.max_length - len(prompt_ids)]
                self.stats.truncated_responses += 1
        # Labels are shifted by one in the loss: token t is predicted from tokens < t, so with an empty prompt the
        # first response token would have nothing to be predicted from.
        supervised = len(response_ids) - (0 if prompt_ids else 1)
        if supervised <= 0:
            self.stats.dropped += 1
            return
        ids = torch.tensor(prompt_ids + response_ids, dtype=torch.long)
        labels = ids.clone()
        labels[: len(prompt_ids)] = IGNORE_INDEX
        self.examples.append((ids, labels))
        self.stats.prompt_lengths.append(len(prompt_ids))
        self.stats.response_lengths.append(len(response_ids))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids, labels = self.examples[i]
        return {"input_ids": ids, "labels": labels}


def collate(examples: Sequence[dict[str, torch.Tensor]], pad_id: int = 50256) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest example and shift: ``x`` = input_ids[:, :-1], ``y`` = labels[:, 1:].

    Padding is known by position (past each example's length), never by token value: GPT-2 pads with the id of
    ``<|endoftext|>``, which is also the last, supervised token of every response. Padded targets are -100; padded
    inputs come after every real token, so causal attention never lets a real token see them.
    """
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = e["input_ids"]
        labels[row, :n] = e["labels"]
    return ids[:, :-1], labels[:, 1:]


class SFTBatches(IterableDataset):
    """Endless shuffled training batches of an ``SFTDataset``, each batch collated.

    Epoch ``e`` is a permutation seeded with (seed, e). With ``bucket``, the permutation is cut into chunks of
    ``64 * batch_size`` examples, each chunk sorted by length and cut into batches, and the batches shuffled again:
    batches hold examples of similar length (far less padding) while the order stays random. Global batch ``g``
    goes to rank ``g % world_size`` and DataLoader workers split a rank's batches, as in ``RandomWindowDataset``;
    the stream is a pure function of (seed, global batch index), so ``start_batch`` resumes it exactly.
    """

    def __init__(
        self,
        dataset: SFTDataset,
        batch_size: int,
        seed: int = 0,
        bucket: bool = True,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        if len(dataset) == 0:
            raise UserError("no training example is left after tokenizing and truncating; check max_length")
        self.dataset, self.batch_size, self.seed, self.bucket = dataset, batch_size, seed, bucket
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch
        self.lengths = np.array([len(ids) for ids, _ in dataset.examples])
        self.batches_per_epoch = -(-len(dataset) // batch_size)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, epoch])))
        order = rng.permutation(len(self.dataset))
        if not self.bucket:
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        chunk = 64 * self.batch_size
        batches = []
        for i in range(0, len(order), chunk):
            part = order[i : i + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[j : j + self.batch_size] for j in range(0, len(part), self.batch_size)]
        return [batches[k] for k in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        worker, num_workers = worker_shard()
        b = self.start_batch + worker
        cached_epoch, batches = None, []
        while True:
            g = b * self.world_size + self.rank
            epoch, k = divmod(g, self.batches_per_epoch)
            if epoch != cached_epoch:
                cached_epoch, batches = epoch, self.epoch_batches(epoch)
            yield collate([self.dataset[int(i)] for i in batches[k]], self.dataset.eot)
            b += num_workers


class SFTValBatches(IterableDataset):
    """Every validation example once, in batches of similar length, split across ranks and workers without repeats."""

    def __init__(self, dataset: SFTDataset, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        order = sorted(range(len(dataset)), key=lambda i: len(dataset.examples[i][0]))
        self.dataset = dataset
        self.batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)][rank::world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        worker, num_workers = worker_shard()
        for batch in self.batches[worker::num_workers]:
            yield collate([self.dataset[i] for i in batch], self.dataset.eot)


def _split_records(records: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """Hold out exactly round(n * val_fraction) records: those whose hash (with the seed) ranks lowest.

    By hash, not by position, so the held-out set does not depend on the order of the file and mostly stays put
    when records are added.
    """
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")

    def rank(record) -> bytes:
        return hashlib.sha256(json.dumps([seed, *record], ensure_ascii=False).encode("utf-8")).digest()

    held_out = set(sorted(range(len(records)), key=lambda i: rank(records[i]))[: round(len(records) * val_fraction)])
    train = [r for i, r in enumerate(records) if i not in held_out]
    val = [r for i, r in enumerate(records) if i in held_out]
    if not val or not train:
        raise UserError(f"val_fraction={val_fraction} leaves an empty split of {len(records)} records; change it")
    return train, val


def _as_dicts(records: list[tuple[str, str, str]]) -> list[dict]:
    return [{"instruction": i, "input": x, "output": r} for i, x, r in records]


class SFTDataModule(L.LightningDataModule):
    """Instruction tuning data from JSON or JSONL files.

    Args:
        train_path: Alpaca, Dolly or prompt/response records (a JSON array, or one JSON object per line).
        val_path: held-out records; without it, ``val_fraction`` of ``train_path`` is held out (chosen by hash).
        max_length: longest example in tokens (at most the model's positions; GPT-2: 1024).
        batch_size: examples per micro-batch (per device).
        template: prompt template name (see ``lit_gpt5.sft.TEMPLATES``) or a format string.
        bucket_by_length: batch examples of similar length together, which wastes far less compute on padding.
        seed: seed of the shuffling and of the held-out choice.
    """

    def __init__(
        self,
        train_path: str | None = None,
        val_path: str | None = None,
        val_fraction: float = 0.05,
        max_length: int = 512,
        batch_size: int = 8,
        val_batch_size: int | None = None,
        template: str = "alpaca",
        bucket_by_length: bool = True,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size <= 0 or (val_batch_size is not None and val_batch_size <= 0):
            raise UserError(f"batch_size must be a positive integer, got {batch_size}")
        format_prompt("x", "", template)  # fail now, not after loading the data, on an unknown template
        self.save_hyperparameters()
        self.train_path, self.val_path = train_path, val_path
        self.max_length = max_length
        self.block_size = max_length  # what the LightningModule checks against the model's positions
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.template = template
        self.num_workers = num_workers
        self.train_set: SFTDataset | None = None
        self.val_set: SFTDataset | None = None

    def prepare_data(self) -> None:
        self.load_records()  # validates every record before the run starts

    def load_records(self) -> tuple[list[dict], list[dict]]:
        if not self.train_path:
            raise UserError("SFTDataModule needs --data.train_path (a JSON or JSONL file of instruction records)")
        records = read_records(self.train_path)
        if self.val_path:
            return _as_dicts(records), _as_dicts(read_records(self.val_path))
        train, val = _split_records(records, self.hparams.val_fraction, self.hparams.seed)
        return _as_dicts(train), _as_dicts(val)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from lit_gpt5.tokenizer import get_tokenizer

        train, val = self.load_records()
        tokenizer = get_tokenizer()
        self.train_set = SFTDataset(train, tokenizer, self.max_length, self.template)
        self.val_set = SFTDataset(val, tokenizer, self.max_length, self.template)
        if self.trainer is None or self.trainer.is_global_zero:
            print(self.train_set.stats.table("train"))
            print(self.val_set.stats.table("val"))

    def train_dataloader(self) -> DataLoader:
        rank, world_size, start = trainer_position(self.trainer)
        hp = self.hparams
        batches = SFTBatches(self.train_set, self.batch_size, hp.seed, hp.bucket_by_length, rank, world_size, start)
        return batch_loader(batches, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        rank, world_size, _ = trainer_position(self.trainer)
        return batch_loader(SFTValBatches(self.val_set, self.val_batch_size, rank, world_size), self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()


# --- The built-in instruction set, derived from Gulliver's Travels -------------------------------------------------

_PART = re.compile(r"^PART ([IV]+)\. (.+?)\.?$", re.MULTILINE)
_CHAPTER = re.compile(r"^CHAPTER ([IVXL]+)\.$", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])[”’]?\s+(?=[A-Z“‘])")
_ABBREVIATIONS = ("Mr.", "Mrs.", "Dr.", "Capt.", "St.", "Mons.", "viz.")
_SMALL_WORDS = {"a", "and", "of", "the", "to"}
ROMAN = {"I": 1, "V": 5, "X": 10, "L": 50}


def _sentences(paragraph: str) -> list[str]:
    pieces = _SENTENCE_END.split(paragraph)
    sentences = [pieces[0]]
    for piece in pieces[1:]:
        if sentences[-1].endswith(_ABBREVIATIONS):  # "Mr. Bates" is one sentence
            sentences[-1] += " " + piece
        else:
            sentences.append(piece)
    return sentences


def _title(words: str) -> str:
    """'A VOYAGE TO THE COUNTRY OF THE HOUYHNHNMS' -> 'A Voyage to the Country of the Houyhnhnms'."""
    out = [
        w.capitalize() if i == 0 or w.lower() not in _SMALL_WORDS else w.lower() for i, w in enumerate(words.split())
    ]
    return " ".join(out)


def _roman(numeral: str) -> int:
    values = [ROMAN[c] for c in numeral]
    return sum(-v if i + 1 < len(values) and v < values[i + 1] else v for i, v in enumerate(values))


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def gulliver_instructions(book_text: str) -> list[dict]:
    """Instruction records derived, deterministically, from the cleaned text of Gulliver's Travels.

    * "Summarise chapter N of Part M" -> the synopsis paragraph printed under the chapter's heading (39 records).
    * "Which voyage is this passage from?" with a paragraph as input -> "Part M: A Voyage to X."
    * "Continue this passage" with a paragraph's first sentences as input -> its next sentence.
    """
    parts = list(_PART.finditer(book_text))
    if len(parts) != 4:
        raise UserError(f"expected the 4 parts of Gulliver's Travels, found {len(parts)}; is this book #829?")
    records: list[dict] = []
    for p, part in enumerate(parts):
        numeral = part.group(1)
        end = parts[p + 1].start() if p + 1 < len(parts) else len(book_text)
        body = book_text[part.end() : end]
        # Part III's title wraps onto a second line, before the first chapter heading.
        chapters = list(_CHAPTER.finditer(body))
        title_tail = " ".join(body[: chapters[0].start()].split()) if chapters else ""
        title = _title(f"{part.group(2)} {title_tail}".rstrip(". "))
        answer = f"Part {numeral}: {title}."
        for c, chapter in enumerate(chapters):
            chapter_end = chapters[c + 1].start() if c + 1 < len(chapters) else len(body)
            paragraphs = _paragraphs(body[chapter.end() : chapter_end])
            if not paragraphs:
                continue
            synopsis, text = paragraphs[0], paragraphs[1:]
            number = _roman(chapter.group(1))
            records.append(
                {
                    "instruction": f"Summarise chapter {number} of Part {numeral} of Gulliver's Travels.",
                    "output": synopsis,
                }
            )
            # Even paragraphs ask for the voyage, odd ones for a continuation: no paragraph serves both.
            for k, paragraph in enumerate(text):
                sentences = _sentences(paragraph)
                if k % 2 == 0:
                    # Whole sentences, up to about 100 words: enough to recognise, short enough for small contexts.
                    passage = sentences[0]
                    for sentence in sentences[1:]:
                        if len(passage.split()) + len(sentence.split()) > 100:
                            break
                        passage += " " + sentence
                    if 30 <= len(passage.split()) <= 110:
                        records.append(
                            {
                                "instruction": "Which voyage of Gulliver's Travels is this passage from?",
                                "input": passage,
                                "output": answer,
                            }
                        )
                elif len(sentences) >= 3:
                    context, following = " ".join(sentences[:2]), sentences[2]
                    if len(context.split()) <= 80 and 5 <= len(following.split()) <= 50:
                        records.append(
                            {
                                "instruction": "Continue this passage from Gulliver's Travels.",
                                "input": context,
                                "output": following,
                            }
                        )
    return records


class GulliverInstructDataModule(SFTDataModule):
    """The instruction set derived from Gulliver's Travels (see ``gulliver_instructions``), held out by hash.

    The book comes from the same place as for pretraining (``book_id``, ``url`` or ``text_path``, with the same
    cache), so it works offline once the book is cached. The derived records are written next to the cached book as
    ``instructions-train.jsonl`` and ``instructions-val.jsonl`` for inspection.
    """

    def __init__(
        self,
        book_id: int = 829,
        url: str | None = None,
        text_path: str | None = None,
        cache_dir: str | None = None,
        val_fraction: float = 0.1,
        max_length: int = 256,
        batch_size: int = 8,
        val_batch_size: int | None = None,
        template: str = "plain",
        bucket_by_length: bool = True,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            None,
            None,
            val_fraction,
            max_length,
            batch_size,
            val_batch_size,
            template,
            bucket_by_length,
            num_workers,
            seed,
        )
        self.book_id, self.url, self.text_path, self.cache_dir = book_id, url, text_path, cache_dir

    def prepare_data(self) -> None:
        # Once per run, on one process: the derived records next to the cached book, for inspection.
        from lit_gpt5.files import write_bytes_atomic

        book = self._book()
        for name, split in zip(("train", "val"), self._records(book.text), strict=True):
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in split)
            write_bytes_atomic(book.cache_dir / f"instructions-{name}.jsonl", lines.encode("utf-8"))

    def _book(self):
        from lit_gpt5.gutenberg import load_book

        return load_book(self.book_id, self.url, self.text_path, self.cache_dir)

    def _records(self, book_text: str) -> tuple[list[dict], list[dict]]:
        records = [normalize_record(r, "gulliver") for r in gulliver_instructions(book_text)]
        train, val = _split_records(records, self.hparams.val_fraction, self.hparams.seed)
        return _as_dicts(train), _as_dicts(val)

    def load_records(self) -> tuple[list[dict], list[dict]]:
        return self._records(self._book().text)


# --- Commands -------------------------------------------------------------------------------------------------------


def show_examples(dataset: SFTDataset, tokenizer, n: int, color: bool, out=None) -> None:
    """Print examples token by token, supervised tokens marked: what the loss actually sees."""
    out = out or sys.stdout
    on, off = ("\033[1;32m", "\033[0m") if color else ("⟦", "⟧")
    for i, (ids, labels) in enumerate(dataset.examples[:n]):
        supervised = labels != IGNORE_INDEX
        out.write(f"=== example {i}: {len(ids)} tokens, {int(supervised.sum())} supervised ===\n")
        text = []
        for token, sup in zip(ids.tolist(), supervised.tolist(), strict=True):
            piece = tokenizer.decode_single_token_bytes(token).decode("utf-8", "replace")
            text.append(f"{on}{piece}{off}" if sup else piece)
        out.write("".join(text) + "\n\n")
    legend = "bold green" if color else "inside ⟦ ⟧ (each token)"
    out.write(f"Supervised tokens are shown {legend}; the rest is prompt, masked with -100.\n")


def main(argv: list[str] | None = None) -> None:
    from lit_gpt5.tokenizer import get_tokenizer

    parser = argparse.ArgumentParser(prog="python -m lit_gpt5.sft", description="Instruction-tuning data tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="print tokenized examples with the supervised tokens marked")
    source = show.add_mutually_exclusive_group(required=True)
    source.add_argument("--train_path", help="a JSON or JSONL file of instruction records")
    source.add_argument("--gulliver", metavar="TEXT_PATH", help="the built-in set, from this copy of book 829")
    show.add_argument("--template", default=None, help="default: alpaca for files, plain for --gulliver")
    show.add_argument("--max_length", type=int, default=512)
    show.add_argument("-n", type=int, default=3, help="how many examples")
    show.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    export = sub.add_parser("gulliver", help="write the built-in instruction set as JSONL files")
    export.add_argument("--text_path", help="a local copy of book 829 (default: download/cache it)")
    export.add_argument("--out", required=True, help="directory for train.jsonl and val.jsonl")
    export.add_argument("--val_fraction", type=float, default=0.1)
    args = parser.parse_args(argv)
    tokenizer = get_tokenizer()
    if args.command == "show":
        if args.gulliver:
            dm = GulliverInstructDataModule(text_path=args.gulliver, max_length=args.max_length)
            records = dm.load_records()[0]
            template = args.template or "plain"
        else:
            records = _as_dicts(read_records(args.train_path))
            template = args.template or "alpaca"
        dataset = SFTDataset(records[: args.n], tokenizer, args.max_length, template)
        color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
        show_examples(dataset, tokenizer, args.n, color)
    else:
        dm = GulliverInstructDataModule(text_path=args.text_path, val_fraction=args.val_fraction)
        train, val = dm.load_records()
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, split in (("train", train), ("val", val)):
            (out / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in split))
        print(f"wrote {len(train)} training and {len(val)} held-out records to {out}")


if __name__ == "__main__":
    from lit_gpt5.errors import run_main

    run_main(main)
