"""The token store: build throughput, a training process's memory as the store grows, batches/s from disk.

    python benchmarks/store.py --shared ../shared      # builds ~100 MB and ~1 GB stores in a temporary folder

1. Build throughput: MB of text per second tokenized into a store (``lit-gpt5 data build``), with one worker and with
   every core, against tiktoken's own ``encode_ordinary_batch`` on the same texts (the ceiling).
2. Memory: the peak RSS of a training process (gpt-nano, 30 steps, 20 validation batches) on a ~100 MB and a ~1 GB
   store (texts made from the three shared books, each document a different slice; nothing is committed): it should
   not grow with the store, since windows are read with ``pread`` and only the index is in memory.
3. Batches per second drawn from the store (random windows, B = 16, T = 256) against the same book in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402
from _process import run_measured  # noqa: E402


def corpus(shared: Path, megabytes: int, out: Path) -> Path:
    """A JSONL file of ~``megabytes`` MB of text: slices of the three shared books, one document per line."""
    texts = [(shared / "data" / "gutenberg" / f).read_text() for f in ("829-0.txt", "1342-0.txt", "84-0.txt")]
    written, k = 0, 0
    with open(out, "w") as f:
        while written < megabytes * 2**20:
            text = texts[k % 3]
            start = (k * 7919) % (len(text) // 2)
            doc = text[start : start + 200_000]
            f.write(json.dumps({"text": doc}) + "\n")
            written, k = written + len(doc), k + 1
    return out


def peak_rss_of(cmd: list[str], cwd: Path) -> tuple[float, float]:
    with tempfile.TemporaryFile() as err:
        code, wall, peak = run_measured(cmd, cwd, stdout=subprocess.DEVNULL, stderr=err)
        if code != 0:
            err.seek(0)
            raise SystemExit(f"failed: {' '.join(cmd)}\n{err.read().decode()[-2000:]}")
    return peak, wall


def main() -> None:
    from lit_gpt5.data import GutenbergDataModule, TokenWindowDataModule
    from lit_gpt5.data.store_build import build, sources
    from lit_gpt5.model.tokenizer import get_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(HERE.parent.parent / "shared"))
    parser.add_argument("--sizes_mb", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--json_out", default="store.json")
    args = parser.parse_args()
    machine = describe_machine()
    print(machine["line"])
    shared = Path(args.shared)
    results: dict = {"machine": machine}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # 1. Build throughput, on the first size.
        small = corpus(shared, args.sizes_mb[0], tmp / "small.jsonl")
        texts = [json.loads(line)["text"] for line in small.read_text().splitlines()]
        megabytes = sum(len(t.encode()) for t in texts) / 2**20
        rates = {}
        for workers in (1, os.cpu_count() or 1):
            start = time.perf_counter()
            get_tokenizer().encode_ordinary_batch(texts, num_threads=workers)
            rates[f"tiktoken, {workers} thread(s)"] = megabytes / (time.perf_counter() - start)
            start = time.perf_counter()
            build(tmp / f"build{workers}", sources(jsonl=[str(small)]), workers=workers, progress=False)
            rates[f"lit-gpt5 data build, {workers} worker(s)"] = megabytes / (time.perf_counter() - start)
        for what, rate in rates.items():
            print(f"{what:<34} {rate:7.2f} MB of text/s ({megabytes:.0f} MB)")
        results["build_mb_per_s"] = rates
        # 2. A training process's peak memory against the store's size.
        rss = {}
        for size in args.sizes_mb:
            text = small if size == args.sizes_mb[0] else corpus(shared, size, tmp / f"c{size}.jsonl")
            store = tmp / f"store{size}"
            build(store, sources(jsonl=[str(text)]), progress=False)
            if text != small:
                text.unlink()  # the corpus's JSONL is not needed once tokenized
            tokens = sum(p.stat().st_size for p in store.glob("shard-*.bin")) // 2
            cmd = [sys.executable, "-m", "lit_gpt5.cli", "fit", "--model.model_name=gpt-nano", f"--data.store={store}",
                   "--data.block_size=256", "--data.batch_size=16", "--trainer.max_steps=30",
                   "--trainer.limit_val_batches=20", "--trainer.val_check_interval=15",
                   "--trainer.num_sanity_val_steps=0", "--trainer.accelerator=cpu",
                   "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp / 'runs'}",
                   "--sampler.max_new_tokens=0", "--trainer.enable_checkpointing=false"]  # fmt: skip
            peak, wall = peak_rss_of(cmd, HERE.parent)
            rss[size] = {"tokens": tokens, "peak_rss_mb": peak, "wall_s": wall}
            print(f"store of ~{size} MB of text ({tokens:,} tokens): training process peak RSS {peak:,.0f} MB")
        sizes = sorted(rss)
        growth = rss[sizes[-1]]["peak_rss_mb"] / rss[sizes[0]]["peak_rss_mb"] - 1
        print(f"peak RSS from the smallest to the largest store: {growth:+.1%}")
        results["rss"], results["rss_growth"] = rss, growth
        # 3. Batches per second: the store against the same book in memory.
        book = shared / "data" / "gutenberg" / "829-0.txt"
        build(tmp / "book", sources(text_paths=[str(book)]), progress=False)
        speeds = {}
        largest = tmp / f"store{sizes[-1]}"
        modules = {
            "in memory": GutenbergDataModule(text_path=str(book)),
            "token store": TokenWindowDataModule(store=str(tmp / "book")),
            f"token store of ~{sizes[-1]} MB": TokenWindowDataModule(store=str(largest)),
        }
        for name, dm in modules.items():
            dm.setup("fit")
            stream = dm.train_dataset()
            start = time.perf_counter()
            for i in range(2000):
                stream.global_batch(i)
            speeds[name] = 2000 / (time.perf_counter() - start)
            print(f"{name:<26} {speeds[name]:8,.0f} batches/s (16 x 256)")
        results["batches_per_s"] = speeds
    Path(args.json_out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
