"""The interpolated bigram baseline of the held-out split: the loss a model must beat to have learned more than
which token tends to follow which.

P(b | a) = lam * count(a, b) / count(a) + (1 - lam) * P_unigram(b), with an add-one unigram over the GPT-2 vocabulary,
both estimated on the training split; lam is chosen on the held-out split (so the figure flatters the baseline).

    python benchmarks/bigram_baseline.py --text_path ../shared/data/gutenberg/829-0.txt [--split interleaved]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lit_gpt5.data import split_tokens
from lit_gpt5.data.gutenberg import load_book
from lit_gpt5.model.tokenizer import get_tokenizer
from lit_gpt5.tools.studies import bigram_loss

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text_path")
    parser.add_argument("--book_id", type=int, default=829)
    parser.add_argument("--val_fraction", type=float, default=0.1)
    parser.add_argument("--split", default="tail", choices=["tail", "interleaved"])
    args = parser.parse_args()
    print(describe_machine()["line"])
    book = load_book(args.book_id, text_path=args.text_path)
    tokens = torch.tensor(get_tokenizer().encode_ordinary(book.text))
    train, held_out = split_tokens(tokens, args.val_fraction, args.split)
    results = {lam: bigram_loss(train, held_out, lam) for lam in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)}
    for lam, loss in results.items():
        print(f"lambda={lam:.1f}  held-out loss {loss:.4f} nats")
    best = min(results, key=results.get)
    print(f"interpolated bigram baseline ({args.split} split): {results[best]:.4f} nats at lambda={best}")
    print(f"unigram-only reference: {bigram_loss(train, held_out, 0.0):.4f} nats")


if __name__ == "__main__":
    main()
