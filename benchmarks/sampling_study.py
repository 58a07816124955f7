"""The sampling study in Model 5's data regime: random windows vs epochs, at Model 5's batch, length, steps and tokens.

    python benchmarks/sampling_study.py --shared ../shared            # every run still missing; ~9 min each on 2 cores
    python benchmarks/sampling_study.py --shared ../shared --only gulliver:random:0

Model 5 sees 500 x 16 x 256 = 2.05M tokens, about 16 passes over Gulliver's 129k training tokens. Every run here does
the same (gpt-micro, 4 layers of 128, dropout 0.1 as Model 5; peak learning rate 2e-3, warmup 20, cosine to 1e-4, as
cpu-demo; precision ``auto``), validating on the held-out tail every 25 steps:

* Gulliver's Travels: ``random``, ``shuffled``, ``shuffled+offset`` (window boundaries moved every epoch) and
  ``sequential``, seeds 0-4 (the seed sets the model's initialisation and the window stream);
* Pride and Prejudice and Frankenstein: ``random`` and ``shuffled``, seeds 0-2;
* Gulliver's Travels held out as every 10th block instead of the tail (``random@interleaved``), seeds 0-4: what the
  test split's position costs.

Each run is a process of its own and appends its result as it finishes, so the study can be stopped and continued
(runs already in ``finals.csv`` are skipped): ``notebooks/results/sampling/finals.csv`` (``book,sampler,seed,model,
tokens_seen,passes,final_val_loss,best_val_loss``) and ``curves.csv`` (held-out loss, coverage and train loss per
evaluation). Notebook 02 reads them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402
from _study import Study, append  # noqa: E402

REPO = HERE.parent
OUT = REPO / "notebooks" / "results" / "sampling"
BOOKS = {"gulliver": "829-0.txt", "pride_and_prejudice": "1342-0.txt", "frankenstein": "84-0.txt"}
MODEL, STEPS, BATCH, BLOCK, VAL_EVERY = "gpt-micro", 500, 16, 256, 25
FINALS = ["book", "sampler", "seed", "model", "tokens_seen", "passes", "final_val_loss", "best_val_loss"]
CURVES = ["book", "sampler", "seed", "step", "val_loss", "coverage", "train_loss"]


def grid() -> list[tuple[str, str, int]]:
    """Every run of the study, most informative first: a session that stops early has the main comparison."""
    runs = [("gulliver", s, seed) for seed in range(5) for s in ("random", "shuffled")]
    runs += [("gulliver", s, seed) for seed in range(5) for s in ("sequential", "shuffled+offset")]
    runs += [(book, s, seed) for seed in range(3) for book in ("pride_and_prejudice", "frankenstein")
             for s in ("random", "shuffled")]  # fmt: skip
    runs += [("gulliver", "random@interleaved", seed) for seed in range(5)]  # the test split's position
    return runs


def study(out: Path) -> Study:
    """The study's runs, keyed by (book, sampler, seed); a run is done when its row is in ``finals.csv``."""
    return Study(Path(__file__), out / "finals.csv", ("book", "sampler", "seed"), (str, str, int))


def study_module():
    """The model every run of this study (and of ``data_constrained_study.py``) trains: gpt-micro with Model 5's dropout
    and cpu-demo's schedule."""
    from lit_gpt5.training.module import GPTLitModule

    return GPTLitModule(model_name=MODEL, dropout=0.1, learning_rate=2e-3, min_lr=1e-4, warmup_steps=20)


def tokens_and_passes(scalars: dict, steps: int) -> tuple[int, float]:
    """(tokens, passes over the training text) of a run of ``steps`` full batches, from its logged scalars.

    train/tokens and train/epochs are logged every few steps, so their last values can be a step or two short of the
    end (498 of 500 batches with a log every 6 steps). Every batch is full, so the run's tokens are exactly
    steps x batch x block, and its passes are the last logged passes scaled by the same ratio."""
    tokens = steps * BATCH * BLOCK
    return tokens, scalars["train/epochs"][1][-1] * tokens / scalars["train/tokens"][1][-1]


def one_run(book: str, sampler: str, seed: int, shared: Path, out: Path, runs: Path, steps: int = STEPS) -> None:
    """Train one run and append its final and its curve (called in a process of its own)."""
    import torch

    from lit_gpt5.data import GutenbergDataModule
    from lit_gpt5.tools.studies import read_scalars, train

    torch.manual_seed(seed)
    module = study_module()
    data = GutenbergDataModule(
        text_path=str(shared / "data" / "gutenberg" / BOOKS[book]),
        block_size=BLOCK,
        batch_size=BATCH,
        val_batch_size=64,
        sampling=sampler.split("@")[0].split("+")[0],
        random_offset="+offset" in sampler,
        split="interleaved" if sampler.endswith("@interleaved") else "tail",
        seed=seed,
    )
    log_dir = train(
        module, data, runs, f"{book}-{sampler}", max_steps=steps, val_every=min(VAL_EVERY, steps), seed=seed
    )
    scalars = read_scalars(log_dir)
    val = dict(zip(*scalars["val/loss"], strict=True))
    coverage = dict(zip(*scalars.get("train/coverage", ([], [])), strict=True))
    train_loss = dict(zip(*scalars.get("train/loss", ([], [])), strict=True))
    tokens, epochs = tokens_and_passes(scalars, steps)

    def nearest(table: dict, step: int):
        return table[min(table, key=lambda s: abs(s - step))] if table and step > 0 else None

    def fmt(value) -> str:
        return "" if value is None else f"{value:.6f}"

    curve = [
        {"book": book, "sampler": sampler, "seed": seed, "step": s, "val_loss": f"{v:.6f}",
         "coverage": fmt(nearest(coverage, s)), "train_loss": fmt(nearest(train_loss, s))}
        for s, v in sorted(val.items())
    ]  # fmt: skip
    append(out / "curves.csv", CURVES, curve)
    final = {
        "book": book, "sampler": sampler, "seed": seed, "model": MODEL, "tokens_seen": int(tokens),
        "passes": f"{epochs:.3f}", "final_val_loss": f"{val[max(val)]:.6f}",
        "best_val_loss": f"{min(val.values()):.6f}",
    }  # fmt: skip
    append(out / "finals.csv", FINALS, [final])  # last: a run is done when its final is written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(REPO.parent / "shared"), help="the folder holding data/gutenberg/")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--runs", default=str(REPO / "notebooks" / "runs" / "sampling"), help="TensorBoard logs")
    parser.add_argument("--only", help="one run, book:sampler:seed")
    parser.add_argument("--max_runs", type=int, default=None, help="stop after this many runs")
    parser.add_argument("--steps", type=int, default=STEPS, help="500 (Model 5's); fewer only to try the script")
    args = parser.parse_args()
    out, shared, runs = Path(args.out), Path(args.shared), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    if args.only:
        book, sampler, seed = study(out).parse(args.only)
        one_run(book, sampler, seed, shared, out, runs, args.steps)
        return
    print(describe_machine()["line"])
    args_of_a_run = ["--shared", str(shared), "--out", str(out), "--runs", str(runs), "--steps", str(args.steps)]
    study(out).run_all(grid(), args_of_a_run, args.max_runs)


if __name__ == "__main__":
    main()
