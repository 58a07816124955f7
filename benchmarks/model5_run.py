"""Model 5 itself: ``configs/model5.yaml`` run to the end, its results written as data for notebook 01.

    python benchmarks/model5_run.py --text_path ../shared/data/gutenberg/829-0.txt                 # ~1 h on 2 cores
    python benchmarks/model5_run.py --text_path … --sampling shuffled --out notebooks/results/model5-shuffled
    python benchmarks/model5_run.py --text_paths G.txt P.txt F.txt --out notebooks/results/model5-3books  # ~2 h

With several books (``--text_paths``) the model trains on all of them and ``metrics.csv``'s ``val_loss`` is the first
book's held-out tail (``val/loss/<its name>``); ``val_by_book.csv`` has every book's. A run stopped part-way (Ctrl-C,
a killed session) continues from its ``last.ckpt`` when the same command is run again (``--fresh`` starts over); its
summary then says so, and its wall time is the last part's.

Runs, in a process of its own (nothing else should run meanwhile: the wall time and tokens/s are part of the result)::

    python -m lit_gpt5.cli fit --config configs/model5.yaml --trainer.accelerator cpu --data.text_path …

(GPT-2 small, 124M parameters, dropout 0.1, peak learning rate 6e-4, 500 steps of 16 x 256 random windows, precision
``auto``), then writes to ``--out``:

* ``metrics.csv``: ``step,train_loss,val_loss``, one row per logged step (``val_loss`` empty where not evaluated);
* ``samples.txt``: the text samples (fixed prompt and seed) before training and after every validation;
* ``summary.json``: the command, the machine, wall time, peak RSS, median training tokens/s, the loss table, the best
  step, the train-test gap, tokens seen and passes over the training split;
* ``loss.png``: train and test loss against steps, with the bigram baseline.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402
from _process import run_measured  # noqa: E402

REPO = HERE.parent
BIGRAM_BASELINE = 5.462  # interpolated bigram, Gulliver's tail split: python benchmarks/bigram_baseline.py


def run(cmd: list[str], log: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of a command in a process of its own; its output goes to ``log``."""
    with open(log, "w") as out:
        code, wall, peak = run_measured(cmd, REPO, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        raise SystemExit(f"the run failed; its output: {log}")
    return wall, peak


def samples(log_text: str) -> list[tuple[int, str]]:
    """The TextSampler's samples in a run's console output: (step, text)."""
    return [(int(s), t) for s, t in re.findall(r"----- sample at step (\d+) -----\n(.*?)\n-----\n", log_text, re.S)]


def write_results(
    out: Path,
    log_dirs: list[Path],
    log_text: str,
    command: list[str],
    wall: float,
    rss: float,
    val_book: str | None = None,
) -> dict:
    from lit_gpt5.tools.studies import read_scalars

    # A resumed run logs to a second version folder: its steps continue the first's (and replace any it repeats).
    merged: dict[str, dict[int, float]] = {}
    for log_dir in log_dirs:
        for tag, (steps, values) in read_scalars(log_dir).items():
            merged.setdefault(tag, {}).update(zip(steps, values, strict=True))
    scalars = {tag: (sorted(v), [v[s] for s in sorted(v)]) for tag, v in merged.items()}
    # train/loss is logged before the optimizer step's update, at the step count before it (99 for the 100th step):
    # written here at the count after it, so step s holds the train loss of the batch trained just before the
    # validation at step s.
    train = {s + 1: v for s, v in zip(*scalars.get("train/loss", ([], [])), strict=True)}
    by_book = {k.removeprefix("val/loss/"): dict(zip(*v, strict=True)) for k, v in scalars.items()
               if k.startswith("val/loss/")}  # fmt: skip
    val = by_book[val_book] if val_book else dict(zip(*scalars["val/loss"], strict=True))
    out.mkdir(parents=True, exist_ok=True)
    if by_book:
        with open(out / "val_by_book.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", *by_book])
            for step in sorted(val):
                writer.writerow([step, *(f"{v[step]:.6f}" for v in by_book.values())])
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "train_loss", "val_loss"])
        for step in sorted(set(train) | set(val)):
            writer.writerow(
                [step, f"{train[step]:.6f}" if step in train else "", f"{val[step]:.6f}" if step in val else ""]
            )
    (out / "samples.txt").write_text("".join(f"--- step {s} ---\n{t}\n\n" for s, t in samples(log_text)))
    best = min(val, key=val.get)
    last = max(val)
    throughput = scalars.get("train/device/items_per_sec", ([], []))[1]
    epochs = scalars.get("train/epochs", ([], [0.0]))[1]
    tokens = scalars.get("train/tokens", ([], [0.0]))[1]
    # Train loss near a validation step: the mean of the logged steps in the 50 steps up to it.
    near = [v for s, v in train.items() if last - 50 < s <= last]
    summary = {
        "command": " ".join(command),
        "val_loss_of": f"val/loss/{val_book}" if val_book else "val/loss",
        "machine": describe_machine(),
        "wall_s": wall,
        "peak_rss_mb": rss,
        "median_tokens_per_s": statistics.median(throughput) if throughput else None,
        "val_loss": {str(s): v for s, v in sorted(val.items())},
        "best_step": best,
        "best_val_loss": val[best],
        "final_val_loss": val[last],
        "final_train_loss": statistics.fmean(near) if near else None,
        "train_test_gap": (val[last] - statistics.fmean(near)) if near else None,
        "tokens_seen": tokens[-1] if tokens else None,
        "passes_over_training_split": epochs[-1] if epochs else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(out, train, val, summary)
    return summary


def plot(out: Path, train: dict, val: dict, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(list(train), list(train.values()), ".-", ms=3, label="train loss (mean over each logged step's tokens)")
    one_book = summary["val_loss_of"] == "val/loss"
    tail = "the book" if one_book else "the first book"
    ax.plot(list(val), list(val.values()), "o-", label=f"test loss (held-out last 10% of {tail})")
    ax.axhline(BIGRAM_BASELINE, color="gray", ls="--", label=f"bigram baseline ({BIGRAM_BASELINE})")
    ax.set_xlabel("optimizer step (16 x 256 tokens each)")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_ylim(0, max(8.0, min(val.values()) + 3))
    on = "Gulliver's Travels" if one_book else f"its books (test: {summary['val_loss_of']})"
    ax.set_title(f"Model 5 (GPT-2 small) on {on}, {summary['passes_over_training_split'] or 0:.1f} passes")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=110)


def fit_command(args: argparse.Namespace, work: Path) -> list[str]:
    """The CLI command of the run: configs/model5.yaml with this script's options, logging under ``work``."""
    command = [
        sys.executable, "-m", "lit_gpt5.cli", "fit", "--config", "configs/model5.yaml",
        f"--trainer.accelerator={args.accelerator}", f"--data.sampling={args.sampling}",
        f"--trainer.default_root_dir={work}", "--trainer.enable_progress_bar=false",
    ] + ([f"--data.text_path={args.text_path}"] if args.text_path else [])  # fmt: skip
    if args.text_paths:
        # configs/model5.yaml names its one book (book_id: 829); a list of books replaces it, which the data module
        # only accepts with the single book cleared.
        books = ",".join(str(Path(p).resolve()) for p in args.text_paths)
        command += ["--data.book_id=null", f"--data.text_paths=[{books}]"]
    command += [f"--trainer.max_steps={args.max_steps}"] if args.max_steps else []
    return command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text_path", help="the book; default: downloaded from Project Gutenberg (#829)")
    parser.add_argument("--text_paths", nargs="+", help="several books, trained on together (val_loss: the first's)")
    parser.add_argument("--fresh", action="store_true", help="start over even where a stopped run's last.ckpt is")
    parser.add_argument("--sampling", default="random", choices=["random", "shuffled", "sequential"])
    parser.add_argument("--out", default=None, help="default: notebooks/results/model5[-<sampling>]")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--max_steps", type=int, default=None, help="only to try the script: fewer than 500 steps")
    args = parser.parse_args()
    machine = describe_machine()
    print(machine["line"])
    out = Path(
        args.out
        or REPO / "notebooks" / "results" / ("model5" if args.sampling == "random" else f"model5-{args.sampling}")
    )
    # The run's own folder outlives the script (notebooks/runs/ is not committed), so that an error after an hour of
    # training leaves its logs to read instead of losing them with a temporary folder.
    work = REPO / "notebooks" / "runs" / out.name
    lasts = sorted(work.glob("lightning_logs/version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    last = lasts[-1] if lasts else None
    resumed = last is not None and not (work / "finished").exists() and not args.fresh
    if not resumed:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    command = fit_command(args, work)
    log = work / ("run-resumed.log" if resumed else "run.log")
    if resumed:
        print(f"continuing the stopped run from {last}")
        command.append(f"--ckpt_path={last}")
    wall, rss = run(command, log)
    (work / "finished").touch()
    log_dirs = sorted(work.glob("lightning_logs/version_*"), key=lambda p: int(p.name.split("_")[1]))
    shown = ["python", *command[1:]]
    shown = [a if not a.startswith("--trainer.default_root_dir") else "--trainer.default_root_dir=<dir>" for a in shown]
    text = "".join(p.read_text() for p in (work / "run.log", work / "run-resumed.log") if p.exists())
    val_book = Path(args.text_paths[0]).stem if args.text_paths else None
    summary = write_results(out, log_dirs, text, shown, wall, rss, val_book)
    if resumed:
        summary["resumed_from"] = str(last.relative_to(REPO))
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"test loss by step: { {s: round(v, 3) for s, v in summary['val_loss'].items()} }")
    gap = summary["train_test_gap"]
    print(
        f"best step {summary['best_step']} ({summary['best_val_loss']:.3f}); train-test gap at the end "
        f"{'n/a' if gap is None else f'{gap:.3f}'}; wall {summary['wall_s'] / 60:.1f} min; "
        f"{summary['median_tokens_per_s'] or 0:,.0f} tokens/s; peak RSS {summary['peak_rss_mb']:,.0f} MB; "
        f"written to {out}"
    )


if __name__ == "__main__":
    main()
