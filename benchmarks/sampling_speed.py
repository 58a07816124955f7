"""Batches per second of the three samplings of training windows (random, shuffled, sequential) on Gulliver's Travels.

    python benchmarks/sampling_speed.py --text_path ../shared/data/gutenberg/829-0.txt [--batch_size 16]

Drawing a batch is B start positions, an index tensor and one gather; the epoch samplings add a permutation per epoch.
Prints batches/s and tokens/s per sampler (best of 3 rounds of --batches batches) and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lit_gpt5.data import GutenbergDataModule
from lit_gpt5.data.starts import SAMPLINGS

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text_path")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--block_size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--json_out", default="sampling_speed.json")
    args = parser.parse_args()
    print(describe_machine()["line"])
    results = {}
    for sampling in SAMPLINGS:
        dm = GutenbergDataModule(text_path=args.text_path, block_size=args.block_size, batch_size=args.batch_size,
                                 sampling=sampling)  # fmt: skip
        dm.prepare_data()
        dm.setup("fit")
        dataset = dm.train_dataset()
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for b in range(args.batches):
                dataset.batch(b)
            best = min(best, time.perf_counter() - start)
        rate = args.batches / best
        results[sampling] = {"batches_per_s": rate, "tokens_per_s": rate * args.batch_size * args.block_size}
        print(
            f"{sampling:<11} {rate:>9,.0f} batches/s  {rate * args.batch_size * args.block_size / 1e6:>7.1f}M tokens/s"
        )
    with open(args.json_out, "w") as f:
        json.dump({"settings": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
