"""``lit-gpt5 sft``: instruction-tuning data tools.

    lit-gpt5 sft show --train_path data.jsonl      # what the loss sees, supervised tokens marked
    lit-gpt5 sft gulliver --out gulliver/          # the built-in instruction set, as JSONL
    lit-gpt5 sft preferences --out pairs/          # the built-in preference pairs (DPO), as JSONL

The data itself lives in ``lit_gpt5.data.instructions`` (records, ``SFTDataset``, ``SFTDataModule``) and
``lit_gpt5.data.gulliver`` (the built-in sets).
"""

from __future__ import annotations

import argparse
import sys

from lit_gpt5.commands.arguments import CommandParser, fraction, fraction_or_zero, output_dir, positive_int
from lit_gpt5.data.gulliver import GulliverInstructDataModule, GulliverPreferenceDataModule
from lit_gpt5.data.instructions import SFTDataset, as_dicts, read_records
from lit_gpt5.data.records import jsonl_bytes
from lit_gpt5.errors import UserError
from lit_gpt5.files import new_folder, write_all_or_nothing
from lit_gpt5.model.loss import IGNORE_INDEX
from lit_gpt5.model.tokenizer import get_tokenizer


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


def _show(args: argparse.Namespace, tokenizer) -> None:
    if args.gulliver:
        records = GulliverInstructDataModule(text_path=args.gulliver).load_records()[0]
        template = args.template or "plain"
    else:
        records = as_dicts(read_records(args.train_path))
        template = args.template or "alpaca"
    dataset = SFTDataset(records[: args.n], tokenizer, args.max_length, template)
    if len(dataset) == 0:
        raise UserError(
            f"all {min(args.n, len(records))} records shown were dropped: none has a response token left within "
            f"--max_length {args.max_length}; raise --max_length"
        )
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    show_examples(dataset, tokenizer, args.n, color)
    if dataset.stats.dropped:
        print(f"({dataset.stats.dropped} of the first {min(args.n, len(records))} records were dropped: too long)")


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser(prog="lit-gpt5 sft", description="Instruction-tuning data tools.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    show = sub.add_parser("show", help="print tokenized examples with the supervised tokens marked")
    source = show.add_mutually_exclusive_group(required=True)
    source.add_argument("--train_path", help="a JSON or JSONL file of instruction records")
    source.add_argument("--gulliver", metavar="TEXT_PATH", help="the built-in set, from this copy of book 829")
    show.add_argument("--template", default=None, help="default: alpaca for files, plain for --gulliver")
    show.add_argument("--max_length", type=positive_int, default=512)
    show.add_argument("-n", type=positive_int, default=3, help="how many examples")
    show.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    export = sub.add_parser("gulliver", help="write the built-in instruction set as JSONL files")
    export.add_argument("--text_path", help="a local copy of book 829 (default: download/cache it)")
    export.add_argument("--out", required=True, help="directory for train.jsonl, val.jsonl (and test.jsonl)")
    export.add_argument("--val_fraction", type=fraction, default=0.1)
    export.add_argument("--test_fraction", type=fraction_or_zero, default=0.0, help="0.1: test.jsonl too")
    prefs = sub.add_parser("preferences", help="write the built-in preference pairs (for DPO) as JSONL files")
    prefs.add_argument("--text_path", help="a local copy of book 829 (default: download/cache it)")
    prefs.add_argument("--out", required=True, help="directory for train.jsonl, val.jsonl (and test.jsonl)")
    prefs.add_argument("--val_fraction", type=fraction, default=0.1)
    prefs.add_argument("--test_fraction", type=fraction_or_zero, default=0.0, help="0.1: test.jsonl too")
    args = parser.parse_args(argv)
    if args.command == "show":
        _show(args, get_tokenizer())
        return
    out = output_dir(args.out)
    kind = GulliverInstructDataModule if args.command == "gulliver" else GulliverPreferenceDataModule
    module = kind(text_path=args.text_path, val_fraction=args.val_fraction, test_fraction=args.test_fraction)
    train, val, test = module.load_splits()
    files = {out / "train.jsonl": jsonl_bytes(train), out / "val.jsonl": jsonl_bytes(val)}
    if test:
        files[out / "test.jsonl"] = jsonl_bytes(test)
    with new_folder(out):  # every file or none, and no folder left by a failure
        write_all_or_nothing(files)
    what = "records" if args.command == "gulliver" else "preference pairs"
    tested = f", {len(test)} test" if test else ""
    print(f"wrote {len(train)} training, {len(val)} validation{tested} {what} to {out}")


if __name__ == "__main__":
    from lit_gpt5.errors import run_main

    run_main(main)
