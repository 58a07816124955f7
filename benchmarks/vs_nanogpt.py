"""cpu-demo against nanoGPT's ``train.py``, as each ships: the same model, batch, steps and book, back to back.

    git clone https://github.com/karpathy/nanoGPT /tmp/nanoGPT      # nothing of it is vendored here
    python benchmarks/vs_nanogpt.py --nanogpt /tmp/nanoGPT --text_path ../shared/data/gutenberg/829-0.txt

Both train gpt-micro (4 layers, 4 heads, 128 dims, GPT-2's 50,257-token vocabulary, biases, no dropout) for 500
steps of 8 x 256 tokens on the training 90% of the same book's GPT-2 tokens, with cpu-demo's schedule (peak 2e-3,
warmup 20, cosine to 1e-4, AdamW 0.9/0.95, weight decay 0.1, clipping 1.0), each with its own default precision on
this CPU (nanoGPT: float32 on any CPU; ours: ``--trainer.precision auto``). nanoGPT's side is prepared in a scratch
directory (``train.bin``/``val.bin`` written from our tokenizer, links to the checkout's ``train.py``, ``model.py``,
``configurator.py``); the checkout itself is not modified.

Printed per tool, each run in a process of its own (nothing else should run meanwhile: 2 cores slow each other far
more than 2x): the median training step time and tokens/s (from each tool's own per-step timing, evaluation steps
excluded), the wall time of the whole command (start-up, evaluation and, for ours as shipped, text samples
included), and the peak RSS of the process. ``--rounds`` alternates the two that many times. Written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402
from _process import run_measured  # noqa: E402

STEPS, BATCH, BLOCK = 500, 8, 256


class StepTimes(L.Callback):
    """Appends the wall time of each training step (optimizer step, no validation) to ``path``, one per line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with open(self.path, "a") as f:
            f.write(f"{time.perf_counter() - self.start}\n")


def run(cmd: list[str], cwd: Path, env: dict, log: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of a command run in a process of its own."""
    with open(log, "w") as out:
        code, wall, peak = run_measured(cmd, cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed; see {log}")
    return wall, peak


def prepare_nanogpt(nanogpt: Path, work: Path, text_path: str) -> Path:
    """A scratch directory nanoGPT's train.py runs in: links to its code, our tokens as its dataset."""
    import numpy as np

    from lit_gpt5.data import GutenbergDataModule

    dm = GutenbergDataModule(text_path=text_path, block_size=BLOCK, batch_size=BATCH)
    dm.setup("fit")
    data = work / "data" / "lit_gpt5_book"
    data.mkdir(parents=True)
    np.concatenate([s.numpy() for s in dm.train_segments]).astype(np.uint16).tofile(data / "train.bin")
    np.concatenate([s.numpy() for s in dm.val_segments]).astype(np.uint16).tofile(data / "val.bin")
    with open(data / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": 50257}, f)  # GPT-2's vocabulary, as ours (nanoGPT would pad it to 50304)
    for name in ("train.py", "model.py", "configurator.py"):
        if not (nanogpt / name).exists():
            raise SystemExit(f"{nanogpt} is not a nanoGPT checkout (no {name}); pass --nanogpt DIR")
        (work / name).symlink_to(nanogpt / name)
    return work


def nanogpt_command(out_dir: Path, steps: int) -> list[str]:
    return [
        sys.executable, "train.py", "--dataset=lit_gpt5_book", "--device=cpu", "--compile=False",
        "--n_layer=4", "--n_head=4", "--n_embd=128", f"--block_size={BLOCK}", "--bias=True", "--dropout=0.0",
        f"--batch_size={BATCH}", "--gradient_accumulation_steps=1", f"--max_iters={steps}",
        f"--lr_decay_iters={steps}", "--learning_rate=2e-3", "--min_lr=1e-4", "--warmup_iters=20",
        "--weight_decay=0.1", "--grad_clip=1.0", "--eval_interval=100", "--eval_iters=7", "--log_interval=1",
        "--always_save_checkpoint=False", f"--out_dir={out_dir}",
    ]  # fmt: skip


def nanogpt_step_times(log: Path) -> list[float]:
    """Per-iteration times nanoGPT printed, without the iterations that also evaluated (every 100th)."""
    times = []
    for it, ms in re.findall(r"iter (\d+): loss \S+, time ([\d.]+)ms", log.read_text()):
        if int(it) % 100 != 0:
            times.append(float(ms) / 1000)
    return times


def ours_command(root: Path, times: Path, text_path: str, steps: int) -> list[str]:
    callback = json.dumps([{"class_path": "vs_nanogpt.StepTimes", "init_args": {"path": str(times)}}])
    return [
        sys.executable, "-m", "lit_gpt5.cli", "fit", "--config", str(HERE.parent / "configs" / "cpu-demo.yaml"),
        f"--data.text_path={text_path}", f"--trainer.default_root_dir={root}", f"--trainer.callbacks={callback}",
        "--trainer.enable_progress_bar=false", f"--trainer.max_steps={steps}",
    ]  # fmt: skip


def summary(name: str, step_times: list[float], wall: float, rss: float) -> dict:
    median = statistics.median(step_times)
    return {
        "tool": name, "steps_timed": len(step_times), "median_step_s": median,
        "tokens_per_s": BATCH * BLOCK / median, "wall_s": wall, "peak_rss_mb": rss,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nanogpt", required=True, help="a nanoGPT checkout (its train.py, model.py)")
    parser.add_argument("--text_path", required=True, help="the book (e.g. ../shared/data/gutenberg/829-0.txt)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=STEPS, help="500, as cpu-demo; fewer only to try the script")
    parser.add_argument("--json_out", default="vs_nanogpt.json")
    args = parser.parse_args()
    machine = describe_machine()
    print(machine["line"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = prepare_nanogpt(Path(args.nanogpt).resolve(), Path(tmp) / "nanogpt", args.text_path)
        for r in range(args.rounds):
            times = Path(tmp) / f"ours{r}.txt"
            wall, rss = run(ours_command(Path(tmp) / f"ours{r}", times, args.text_path, args.steps), HERE.parent, env,
                            Path(tmp) / f"ours{r}.log")  # fmt: skip
            step_times = [float(t) for t in times.read_text().split()]
            rows.append(summary("lit_gpt5 cpu-demo", step_times[5:], wall, rss))  # after 5 warm-up steps
            log = Path(tmp) / f"nanogpt{r}.log"
            wall, rss = run(nanogpt_command(Path(tmp) / f"nano_out{r}", args.steps), work, env, log)
            rows.append(summary("nanoGPT train.py", nanogpt_step_times(log)[5:], wall, rss))
            for row in rows[-2:]:
                print(
                    f"round {r}: {row['tool']:<18} median step {row['median_step_s'] * 1000:7.1f} ms  "
                    f"{row['tokens_per_s']:8,.0f} tokens/s  wall {row['wall_s']:6.1f} s  peak RSS "
                    f"{row['peak_rss_mb']:6.0f} MB"
                )
    ours = statistics.median(r["tokens_per_s"] for r in rows if r["tool"].startswith("lit_gpt5"))
    theirs = statistics.median(r["tokens_per_s"] for r in rows if r["tool"].startswith("nanoGPT"))
    print(f"lit_gpt5 / nanoGPT tokens/s: {ours / theirs:.2f}x")
    Path(args.json_out).write_text(json.dumps({"machine": machine, "rows": rows, "ratio": ours / theirs}, indent=1))


if __name__ == "__main__":
    main()
