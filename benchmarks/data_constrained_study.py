"""How much one book holds: random windows against epochs as the passes grow, and one book against three, at Model
5's token budget.

    python benchmarks/data_constrained_study.py --shared ../shared      # every run still missing; ~13 min each
    python benchmarks/data_constrained_study.py --shared ../shared --only gpt-micro:gulliver:0.125:random:0

Every gpt-micro run sees what Model 5 sees, 500 x 16 x 256 = 2.05M tokens, with the sampling study's settings
(gpt-micro, dropout 0.1, peak learning rate 2e-3, warmup 20, cosine to 1e-4, precision ``auto``), and is validated
every 25 steps on the held-out tail (last 10%) of **each** of the three books, trained on or not
(``--data.eval_text_paths``: a book only evaluated is never trained on and is not part of ``val/loss``):

1. **Passes**: Gulliver's training text cut to its first 1/8, 1/4, 1/2 or all of itself (``--data.train_fraction``;
   the held-out tail unchanged), ~126, ~63, ~32 and ~16 passes, for ``random``, ``shuffled`` and ``shuffled+offset``,
   seeds 0-2, and seeds 3-4 of ``random`` and ``shuffled+offset`` where their difference straddled 0 at three seeds
   (~126, ~63 and ~16 passes), and of ``shuffled`` at ~63 passes, where shuffled+offset - shuffled did;
2. **One book or three**: Gulliver + Pride and Prejudice + Frankenstein (~5 passes over the three) against Gulliver
   alone, ``random`` and ``shuffled``, seeds 0-4; and Model 5 itself (124M) on the three books, one run (~2 h on 2
   cores, ``benchmarks/model5_run.py --text_paths ...`` into ``notebooks/results/model5-3books/``).

Training does not depend on what is evaluated (the window stream and the dropout masks are functions of the seed and
the step; tested), so every run here trains as it would without the books it only evaluates. They are not the
sampling study's runs of the same seed: those drew ``nn.Dropout``'s masks, these draw ``lit_gpt5.model.dropout``'s
(same distribution, other numbers; all of Gulliver, random, seed 0 ends at 5.354 here against 5.347 there), so
comparisons stay within this study. For the same reason every run of the study uses one version of the package, the
one of its first runs, 19301b6 (later versions round the CPU attention differently: same masks, other bf16 bits):
continue it with this driver and the package of a worktree of that commit, writing here::

    git worktree add --detach ../study 19301b6
    cd ../study && PYTHONPATH=. python ../lit_gpt5/benchmarks/data_constrained_study.py --shared ../shared \
        --out ../lit_gpt5/notebooks/results/data_constrained --runs ../lit_gpt5/notebooks/runs/data_constrained

Each run imports the package ``PYTHONPATH`` names (its relative entries made absolute, since every run starts in this
checkout); ``machines.csv`` shows which commit each run used.

Each run is a process of its own and appends its rows as it finishes, so the study can be stopped and continued:
``notebooks/results/data_constrained/finals.csv`` (``train_books,train_fraction,sampler,seed,model,tokens_seen,
passes,eval_book,final_val_loss,best_val_loss``, one row per run and evaluated book; ``train_books`` joins book names
with ``+``), ``curves.csv`` (held-out loss per evaluated book and train loss per evaluation) and ``machines.csv`` (the
package commit and the machine of each run: the runs moved between machines, and losses, not times, are compared
across them). Notebook 05 reads them.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402
from _study import Study, absolute_pythonpath, append  # noqa: E402
from sampling_study import BATCH, BLOCK, BOOKS, MODEL, STEPS, VAL_EVERY, study_module, tokens_and_passes  # noqa: E402

REPO = HERE.parent
OUT = REPO / "notebooks" / "results" / "data_constrained"
THREE = "+".join(BOOKS)
FRACTIONS = (0.125, 0.25, 0.5, 1.0)
KEY = ("model", "train_books", "train_fraction", "sampler", "seed")
FINALS = ["train_books", "train_fraction", "sampler", "seed", "model", "tokens_seen", "passes", "eval_book",
          "final_val_loss", "best_val_loss"]  # fmt: skip
CURVES = ["model", "train_books", "train_fraction", "sampler", "seed", "step", "eval_book", "val_loss", "train_loss"]
MACHINES = [*KEY, "code", "machine"]


def grid() -> list[tuple[str, str, float, str, int]]:
    """Every run of the study, most informative first: a session that stops early has the extremes of both questions
    at one seed, then at three."""
    runs = []
    for seeds in (range(1), range(1, 3)):
        for seed in seeds:
            for books, fraction in (("gulliver", 0.125), ("gulliver", 1.0), (THREE, 1.0)):
                runs += [(MODEL, books, fraction, s, seed) for s in ("random", "shuffled")]
    runs += [(MODEL, "gulliver", f, s, seed) for seed in range(3) for f in (0.25, 0.5) for s in ("random", "shuffled")]
    runs += [(MODEL, "gulliver", f, "shuffled+offset", seed) for seed in range(3) for f in FRACTIONS]
    runs += [(MODEL, b, 1.0, s, seed) for seed in (3, 4) for b in ("gulliver", THREE) for s in ("random", "shuffled")]
    runs += [("model5", THREE, 1.0, "random", 0)]
    # Seeds 3-4 where random - shuffled+offset straddled 0 at three seeds (~16, ~63 and ~126 passes): the offset runs
    # and the random runs they pair with (at 16 passes those are the one-book-or-three runs above).
    runs += [(MODEL, "gulliver", 1.0, "shuffled+offset", seed) for seed in (3, 4)]
    runs += [
        (MODEL, "gulliver", f, s, seed) for f in (0.25, 0.125) for seed in (3, 4) for s in ("random", "shuffled+offset")
    ]
    # Seeds 3-4 of shuffled at ~63 passes: shuffled+offset - shuffled straddled 0 there at three seeds (the only other
    # paired interval that did once the runs above were in).
    runs += [(MODEL, "gulliver", 0.25, "shuffled", seed) for seed in (3, 4)]
    return runs


def study(out: Path) -> Study:
    """The study's runs, keyed by (model, train_books, train_fraction, sampler, seed); a run is done when its rows
    are in ``finals.csv``."""
    return Study(Path(__file__), out / "finals.csv", KEY, (str, str, float, str, int))


def book_paths(shared: Path, names: list[str]) -> list[str]:
    return [str(shared / "data" / "gutenberg" / BOOKS[name]) for name in names]


def name_of(stem: str) -> str:
    """A book's study name from its file stem (``829-0`` -> ``gulliver``)."""
    return next(name for name, file in BOOKS.items() if Path(file).stem == stem)


def micro_run(books: str, fraction: float, sampler: str, seed: int, shared: Path, runs: Path, steps: int) -> tuple:
    """Train one gpt-micro run; (tokens seen, passes, {eval book: {step: val loss}}, {step: train loss})."""
    import torch

    from lit_gpt5.data import GutenbergDataModule
    from lit_gpt5.tools.studies import read_scalars, train

    trained = books.split("+")
    torch.manual_seed(seed)
    module = study_module()
    data = GutenbergDataModule(
        **({"text_path": book_paths(shared, trained)[0]} if len(trained) == 1 else
           {"text_paths": book_paths(shared, trained)}),
        eval_text_paths=book_paths(shared, [b for b in BOOKS if b not in trained]),
        train_fraction=fraction,
        block_size=BLOCK,
        batch_size=BATCH,
        val_batch_size=64,
        sampling=sampler.split("+")[0],
        random_offset="+offset" in sampler,
        seed=seed,
    )  # fmt: skip
    name = f"{books}-{fraction}-{sampler}".replace("+", "_")
    log_dir = train(module, data, runs, name, max_steps=steps, val_every=min(VAL_EVERY, steps), seed=seed)
    scalars = read_scalars(log_dir)
    val = {name_of(tag.removeprefix("val/loss/")): dict(zip(*v, strict=True)) for tag, v in scalars.items()
           if tag.startswith("val/loss/")}  # fmt: skip
    tokens, passes = tokens_and_passes(scalars, steps)
    train_loss = dict(zip(*scalars.get("train/loss", ([], [])), strict=True))
    return tokens, passes, val, train_loss


def model5_run(shared: Path, steps: int) -> tuple:
    """Model 5 on the three books through ``benchmarks/model5_run.py`` (resumable there: its ``last.ckpt``)."""
    out = REPO / "notebooks" / "results" / "model5-3books"
    cmd = [sys.executable, str(HERE / "model5_run.py"), "--text_paths", *book_paths(shared, list(BOOKS)),
           "--out", str(out)] + (["--max_steps", str(steps)] if steps != STEPS else [])  # fmt: skip
    subprocess.run(cmd, check=True, cwd=REPO, env=absolute_pythonpath())  # the package PYTHONPATH names, as every run
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "val_by_book.csv") as f:
        rows = list(csv.DictReader(f))
    val = {name_of(stem): {int(r["step"]): float(r[stem]) for r in rows} for stem in rows[0] if stem != "step"}
    with open(out / "metrics.csv") as f:
        train_loss = {int(r["step"]): float(r["train_loss"]) for r in csv.DictReader(f) if r["train_loss"]}
    return summary["tokens_seen"], summary["passes_over_training_split"], val, train_loss


def one_run(key: tuple, shared: Path, out: Path, runs: Path, steps: int = STEPS) -> None:
    """Train one run and append its rows and curves (called in a process of its own)."""
    model, books, fraction, sampler, seed = key
    if model == "model5":
        tokens, passes, val, train_loss = model5_run(shared, steps)
    else:
        tokens, passes, val, train_loss = micro_run(books, fraction, sampler, seed, shared, runs, steps)
    base = {"model": model, "train_books": books, "train_fraction": fraction, "sampler": sampler, "seed": seed}

    def nearest(table: dict, step: int) -> str:
        return f"{table[min(table, key=lambda s: abs(s - step))]:.6f}" if table and step > 0 else ""

    curves = [{**base, "step": s, "eval_book": book, "val_loss": f"{v:.6f}", "train_loss": nearest(train_loss, s)}
              for book, by_step in val.items() for s, v in sorted(by_step.items())]  # fmt: skip
    append(out / "curves.csv", CURVES, curves)
    finals = [{**base, "tokens_seen": int(tokens), "passes": f"{passes:.3f}", "eval_book": book,
               "final_val_loss": f"{by_step[max(by_step)]:.6f}", "best_val_loss": f"{min(by_step.values()):.6f}"}
              for book, by_step in val.items()]  # fmt: skip
    append(out / "machines.csv", MACHINES, [{**base, "code": package_commit(), "machine": machine_line()}])
    append(out / "finals.csv", FINALS, finals)  # last: a run is done when its rows are written


def package_commit() -> str:
    """The commit of the checkout the imported ``lit_gpt5`` comes from (a worktree's, under ``PYTHONPATH``), with
    ``-dirty`` when its package files differ from that commit: which version trained a run."""
    import lit_gpt5

    git = ["git", "-C", str(Path(lit_gpt5.__file__).resolve().parent)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True, text=True).stdout.strip()
    return (commit or "unknown") + ("-dirty" if dirty else "")


def machine_line() -> str:
    return describe_machine()["line"].removeprefix("machine: ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(REPO.parent / "shared"), help="the folder holding data/gutenberg/")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--runs", default=str(REPO / "notebooks" / "runs" / "data_constrained"), help="TensorBoard")
    parser.add_argument("--only", help="one run, " + ":".join(KEY))
    parser.add_argument("--max_runs", type=int, default=None, help="stop after this many runs")
    parser.add_argument("--skip_model5", action="store_true", help="leave out the 2-hour Model 5 run")
    parser.add_argument("--steps", type=int, default=STEPS, help="500 (Model 5's); fewer only to try the script")
    args = parser.parse_args()
    out, shared, runs = Path(args.out), Path(args.shared), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    if args.only:
        one_run(study(out).parse(args.only), shared, out, runs, args.steps)
        return
    print(describe_machine()["line"])
    todo = [key for key in grid() if not (args.skip_model5 and key[0] == "model5")]
    args_of_a_run = ["--shared", str(shared), "--out", str(out), "--runs", str(runs), "--steps", str(args.steps)]
    study(out).run_all(todo, args_of_a_run, args.max_runs)


if __name__ == "__main__":
    main()
