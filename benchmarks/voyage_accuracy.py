"""Held-out voyage questions answered greedily: how often a tuned model names the right part of Gulliver's Travels.

    python benchmarks/voyage_accuracy.py --ckpt <checkpoint> [--ckpt <another> ...] --text_path …/829-0.txt

The questions are the "Which voyage of Gulliver's Travels is this passage from?" records of the built-in instruction
set's test split (``--test_fraction``, 0.1 as in ``benchmarks/instruction_pipeline.py``; the same held-out prompts for
SFT and DPO; 0 takes the validation records instead). An answer is right when it names the right part
("Part III: …"); exact answers (the whole title) are counted too. Prints a line per checkpoint; --json_out writes them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from lit_gpt5.data.gulliver import GulliverInstructDataModule
from lit_gpt5.model.generate import generate_batch
from lit_gpt5.model.prompts import format_prompt
from lit_gpt5.model.tokenizer import get_tokenizer
from lit_gpt5.weights.checkpoints import load_model, tuning_template

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402

PART = re.compile(r"Part ([IV]+)\b")


def voyage_accuracy(ckpt: str, records: list[dict], batch_size: int = 16) -> dict:
    tokenizer = get_tokenizer()
    model = load_model(ckpt).eval()
    template = tuning_template(ckpt) or "plain"
    answers = []
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        prompts = [tokenizer.encode_ordinary(format_prompt(r["instruction"], r["input"], template)) for r in batch]
        for ids in generate_batch(model, prompts, 24, temperature=0, stop_token=tokenizer.eot_token):
            answers.append(tokenizer.decode(ids).strip())
    named = [PART.match(a).group(1) if PART.match(a) else None for a in answers]
    right = [PART.match(r["output"]).group(1) for r in records]
    return {
        "ckpt": ckpt,
        "questions": len(records),
        "right_part": sum(n == r for n, r in zip(named, right, strict=True)) / len(records),
        "exact": sum(a == r["output"] for a, r in zip(answers, records, strict=True)) / len(records),
        "answers": answers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", action="append", required=True, help="a checkpoint (repeat to compare several)")
    parser.add_argument("--text_path", help="a local copy of book 829 (default: the cached download)")
    parser.add_argument("--test_fraction", type=float, default=0.1, help="0: the validation records instead")
    parser.add_argument("--json_out")
    args = parser.parse_args()
    print(describe_machine()["line"])
    splits = GulliverInstructDataModule(text_path=args.text_path, test_fraction=args.test_fraction).load_splits()
    held_out = splits.test if args.test_fraction else splits.val
    questions = [r for r in held_out if r["instruction"].startswith("Which voyage")]
    results = [voyage_accuracy(ckpt, questions) for ckpt in args.ckpt]
    for r in results:
        print(
            f"{r['ckpt']}: right part {r['right_part']:.1%}, exact answer {r['exact']:.1%} "
            f"of {r['questions']} questions"
        )
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
