"""The built-in instruction and preference sets, derived deterministically from Gulliver's Travels (Gutenberg #829).

Nothing is downloaded beyond the book itself, so instruction tuning works offline once the book is cached:

* "Summarise chapter N of Part M" -> the synopsis paragraph printed under the chapter's heading (39 records);
* "Which voyage of Gulliver's Travels is this passage from?" with a passage as input -> "Part M: A Voyage to X.";
* "Continue this passage" with a paragraph's first two sentences as input -> its third sentence.
"""

from __future__ import annotations

import hashlib
import re

from lit_gpt5.data.book_module import BookSource
from lit_gpt5.data.instructions import SFTDataModule, as_dicts, normalize_record
from lit_gpt5.data.preferences import PreferenceDataModule, as_pair_dicts, normalize_pair
from lit_gpt5.data.records import Splits, write_jsonl
from lit_gpt5.errors import UserError

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
    ``instructions-train.jsonl``, ``instructions-val.jsonl`` (and ``instructions-test.jsonl`` with a test split)
    for inspection. Defaults that differ from ``SFTDataModule``'s: 10% held out for validation, examples of at most
    256 tokens (the CPU models' context), the ``plain`` template. The other arguments are ``SFTDataModule``'s
    (``test_fraction`` among them: 0.1 holds out another 10% for ``test`` to report on).
    """

    def __init__(
        self,
        book_id: int = 829,
        url: str | None = None,
        text_path: str | None = None,
        cache_dir: str | None = None,
        val_fraction: float = 0.1,
        max_length: int = 256,
        template: str = "plain",
        **kwargs,
    ) -> None:
        super().__init__(val_fraction=val_fraction, max_length=max_length, template=template, **kwargs)
        self.source = BookSource(book_id, url, text_path, cache_dir)

    def prepare_data(self) -> None:
        # Once per run, on one process: the derived records next to the cached book, for inspection.
        book = self.source.load()
        for name, split in zip(("train", "val", "test"), self.split(book.text), strict=True):
            path = book.cache_dir / f"instructions-{name}.jsonl"
            if split or name != "test":
                write_jsonl(path, split)
            else:  # no test split this run: no file left from one that had it
                path.unlink(missing_ok=True)
        super().prepare_data()

    def split(self, book_text: str) -> Splits:
        """(training, validation, test) records of the book, held out by hash."""
        records = [normalize_record(r, "gulliver") for r in gulliver_instructions(book_text)]
        return self.split_records(as_dicts(records))

    def load_splits(self) -> Splits:
        return self.split(self.source.load().text)


# --- The preference set --------------------------------------------------------------------------------------------


def _pick(key: str, options: list[str]) -> str:
    """One of ``options``, chosen by the hash of ``key``: deterministic, and spread evenly over the options."""
    return options[int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % len(options)]


def gulliver_preferences(book_text: str) -> list[dict]:
    """Preference pairs derived, deterministically, from the instruction set (``gulliver_instructions``): each
    instruction with its right answer as ``chosen`` and a plausible wrong one as ``rejected``.

    * voyage questions: rejected = the title of another part;
    * chapter synopses: rejected = the synopsis of a different chapter;
    * continuations: rejected = a sentence from elsewhere in the book: the first sentence of a passage of a voyage
      question, which is never the answer of another record (a held-out pair then rejects nothing that training
      pairs choose).
    """
    records = gulliver_instructions(book_text)
    answers: dict[str, list[str]] = {}
    for r in records:
        answers.setdefault(r["instruction"].split()[0], []).append(r["output"])
    elsewhere = sorted({_sentences(r["input"])[0] for r in records if r["instruction"].startswith("Which voyage")})
    pairs = []
    for r in records:
        kind = r["instruction"].split()[0]
        pool = elsewhere if kind == "Continue" else answers[kind]
        rejected = _pick(r["instruction"] + r.get("input", ""), sorted({a for a in pool if a != r["output"]}))
        pairs.append({**{k: v for k, v in r.items() if k != "output"}, "chosen": r["output"], "rejected": rejected})
    return pairs


class GulliverPreferenceDataModule(PreferenceDataModule):
    """The preference set derived from Gulliver's Travels (``gulliver_preferences``), held out by hash, from the same
    book source as pretraining and instruction tuning. Defaults that differ from ``PreferenceDataModule``'s: sides of
    at most 256 tokens and the ``plain`` template, as ``GulliverInstructDataModule``. The other arguments are
    ``PreferenceDataModule``'s."""

    def __init__(
        self,
        book_id: int = 829,
        url: str | None = None,
        text_path: str | None = None,
        cache_dir: str | None = None,
        max_length: int = 256,
        template: str = "plain",
        **kwargs,
    ) -> None:
        super().__init__(max_length=max_length, template=template, **kwargs)
        self.source = BookSource(book_id, url, text_path, cache_dir)

    def split(self, book_text: str) -> Splits:
        """(training, validation, test) pairs of the book, held out by hash."""
        pairs = [normalize_pair(r, "gulliver") for r in gulliver_preferences(book_text)]
        return self.split_records(as_pair_dicts(pairs))

    def load_splits(self) -> Splits:
        return self.split(self.source.load().text)
