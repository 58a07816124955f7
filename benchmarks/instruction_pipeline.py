"""The CPU pipeline of the docs, selected on validation records and reported on test records it never chose by:
cpu-demo -> sft-gulliver (full, or LoRA at two learning rates, on the blocks or with the tied embedding) -> DPO.

    python benchmarks/instruction_pipeline.py --text_path ../shared/data/gutenberg/829-0.txt   # resumable, ~50 min

Every run is the command the docs give (``python -m lit_gpt5.cli fit --config configs/...``, in a process of its
own, its console output in ``benchmarks/results/pipeline/<run>.txt``), with ``--data.test_fraction 0.1``: of the
Gulliver instruction set (and the preference pairs built from it, held out by the same hash), 10% validate, another
10% are the test records, the rest train. Selection uses validation only: the checkpoint kept by ``val/loss`` (every
20 steps), and, between the two learning rates of a LoRA setting, the one with the lower best ``val/loss``. The
report is the test split, as ``lit-gpt5 test --ckpt_path best`` gives it: the test loss of the checkpoint kept by
validation, and of the final one, beside each other.

1. ``base``: ``configs/cpu-demo.yaml`` (gpt-micro, 500 steps); its test row is the untuned model on the test records.
2. ``sft-*``: ``configs/sft-gulliver.yaml`` from the base (120 steps): ``full`` at the config's 1e-3, and LoRA r = 8
   (alpha 16) on the blocks (``lora``) or with the tied embedding (``lora-wte``), at 2e-3 and 1e-2.
3. ``dpo``: ``configs/dpo-gulliver.yaml`` from ``sft-full``'s checkpoint kept by validation; its report is the test
   pairs' reward accuracy (ties, which the untuned policy has on every pair, count half) with a 95% Wilson interval.

Results: ``benchmarks/results/pipeline/results.csv``, one row per run, appended as each finishes (runs already there
are skipped). Checkpoints stay in ``--work``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402
from _process import run_measured  # noqa: E402
from _study import Study, append  # noqa: E402

REPO = HERE.parent
OUT = REPO / "benchmarks" / "results" / "pipeline"
TEST_FRACTION = 0.1
# run -> (config, setting, learning rate, extra arguments)
LORA = ["--model.lora_r=8", "--model.lora_alpha=16"]
WTE = ["--model.lora_targets=[c_attn, c_proj, c_fc, wte]"]
RUNS = {
    "base": ("cpu-demo.yaml", "none", "2e-3", []),
    "sft-full-1e-3": ("sft-gulliver.yaml", "full", "1e-3", []),
    "sft-lora-2e-3": ("sft-gulliver.yaml", "lora", "2e-3", LORA),
    "sft-lora-1e-2": ("sft-gulliver.yaml", "lora", "1e-2", LORA),
    "sft-lora-wte-2e-3": ("sft-gulliver.yaml", "lora-wte", "2e-3", LORA + WTE),
    "sft-lora-wte-1e-2": ("sft-gulliver.yaml", "lora-wte", "1e-2", LORA + WTE),
    "dpo": ("dpo-gulliver.yaml", "dpo", "1e-4", []),
}
COLUMNS = ["run", "setting", "lr", "trainable", "best_step", "val_best", "val_final", "test_at_best", "test_final",
           "test_n", "test_correct", "seconds", "peak_rss_mb"]  # fmt: skip


def study() -> Study:
    return Study(Path(__file__), OUT / "results.csv", ("run",), (str,))


def checkpoints(work: Path, run: str) -> tuple[Path, Path]:
    """(the checkpoint kept by val/loss, last.ckpt) of a finished run."""
    folder = work / run / "lightning_logs" / "version_0" / "checkpoints"
    best = [p for p in folder.glob("step*.ckpt")]
    if len(best) != 1:
        raise SystemExit(f"{run}: expected one checkpoint kept by val/loss in {folder}, found {len(best)}")
    return best[0], folder / "last.ckpt"


def fit(run: str, text_path: str, work: Path) -> tuple[float, float]:
    """The run's ``fit`` command, in a process of its own; (wall seconds, peak RSS MB)."""
    config, _, lr, extra = RUNS[run]
    args = [f"--data.text_path={text_path}", f"--trainer.default_root_dir={work / run}"]
    args += ["--trainer.enable_progress_bar=false"]  # the log keeps the validations and samples, not a bar
    if run.startswith("sft-lora"):  # the LoRA runs' own learning rate, decaying to a tenth as the config's does
        args += [f"--model.learning_rate={lr}", f"--model.min_lr={float(lr) / 10:g}"]
    if run.startswith("sft"):
        args += [f"--model.init_from={work / 'base' / 'lightning_logs/version_0/checkpoints/last.ckpt'}"]
    if run == "dpo":
        args += [f"--model.init_from={checkpoints(work, 'sft-full-1e-3')[0]}"]
    if run != "base":
        args += [f"--data.test_fraction={TEST_FRACTION}"]
    shutil.rmtree(work / run, ignore_errors=True)  # a rerun replaces a run that died half-way
    cmd = [sys.executable, "-m", "lit_gpt5.cli", "fit", "--config", f"configs/{config}", *args, *extra]
    log = OUT / f"{run}.txt"
    with open(log, "w") as out:
        out.write("$ " + " ".join(cmd[1:]) + "\n")
        out.flush()
        code, wall, rss = run_measured(cmd, REPO, stdout=out, stderr=out)
    if code != 0:
        raise SystemExit(f"{run} failed; its output: {log}")
    return wall, rss


def test_figures(run: str, ckpt: Path, text_path: str) -> dict:
    """What ``lit-gpt5 test`` reports for ``ckpt`` on the test records (``test/loss``; DPO: its metrics)."""
    import lightning as L

    from lit_gpt5.data.gulliver import GulliverInstructDataModule, GulliverPreferenceDataModule
    from lit_gpt5.tools.studies import report_on_test
    from lit_gpt5.training.module import GPTLitModule
    from lit_gpt5.tuning.dpo import DPOLitModule

    L.seed_everything(0, verbose=False)
    if run == "dpo":
        module = DPOLitModule.load_from_checkpoint(ckpt, weights_only=True)
        data = GulliverPreferenceDataModule(text_path=text_path, test_fraction=TEST_FRACTION, val_batch_size=16)
    else:
        module = GPTLitModule.load_from_checkpoint(ckpt, weights_only=True)
        data = GulliverInstructDataModule(text_path=text_path, test_fraction=TEST_FRACTION, val_batch_size=16)
    return {**report_on_test(module, data, accelerator="cpu"), "n": len(data.test_set)}


def val_losses(work: Path, run: str) -> list[tuple[int, float]]:
    from lit_gpt5.tools.studies import read_scalars

    steps, values = read_scalars(work / run / "lightning_logs" / "version_0")["val/loss"]
    return list(zip(steps, values, strict=True))


def one(run: str, text_path: str, work: Path) -> None:
    start = time.perf_counter()
    wall, rss = fit(run, text_path, work)
    last = work / run / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    row = {"run": run, "setting": RUNS[run][1], "lr": RUNS[run][2], "seconds": round(wall), "peak_rss_mb": round(rss)}
    log_text = (OUT / f"{run}.txt").read_text()
    trainable = re.search(r"Trainable params: ([\d.]+ \w)", log_text)
    row["trainable"] = trainable.group(1) if trainable else ""
    curve = val_losses(work, run)
    row["val_final"] = round(curve[-1][1], 4)
    if run == "base":  # the untuned model on the SFT test records: the row every gain is counted from
        figures = test_figures("sft", last, text_path)
        row.update(test_final=round(figures["test/loss"], 4), test_n=figures["n"])
    else:
        best, last = checkpoints(work, run)
        kept = int(re.search(r"step(\d+)", best.name).group(1))
        row["best_step"], row["val_best"] = kept, round(min(v for s, v in curve if s > 0), 4)
        at_best, final = test_figures(run, best, text_path), test_figures(run, last, text_path)
        if run == "dpo":
            row.update(test_at_best=round(at_best["test/rewards/accuracies"], 4),
                       test_final=round(final["test/rewards/accuracies"], 4), test_n=at_best["n"],
                       test_correct=round(at_best["test/rewards/accuracies"] * at_best["n"], 2))  # fmt: skip
        else:
            row.update(test_at_best=round(at_best["test/loss"], 4), test_final=round(final["test/loss"], 4),
                       test_n=at_best["n"])  # fmt: skip
    append(OUT / "results.csv", COLUMNS, [row])
    print(f"{run}: {json.dumps(row)} ({time.perf_counter() - start:.0f} s with the evaluation)", flush=True)


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a proportion k/n."""
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def report() -> None:
    """The LoRA table and the DPO line, from results.csv: learning rates chosen on validation, figures on test."""
    import csv

    with open(OUT / "results.csv") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    if "base" not in rows or "sft-full-1e-3" not in rows:
        return
    base, full = float(rows["base"]["test_final"]), rows["sft-full-1e-3"]
    gain = base - float(full["test_at_best"])
    print(f"untuned: test loss {base:.3f} ({rows['base']['test_n']} test records)")
    for setting in ("full", "lora", "lora-wte"):
        tried = [r for r in rows.values() if r["setting"] == setting]
        if not tried:
            continue
        chosen = min(tried, key=lambda r: float(r["val_best"]))  # selection: validation only
        share = (base - float(chosen["test_at_best"])) / gain
        final_share = (base - float(chosen["test_final"])) / (base - float(full["test_final"]))
        print(
            f"{setting}: learning rate chosen on validation {chosen['lr']} of {len(tried)} (best val/loss "
            f"{chosen['val_best']} at step {chosen['best_step']}); test loss of that checkpoint "
            f"{float(chosen['test_at_best']):.3f} ({share:.0%} of full tuning's gain); at the last step "
            f"{float(chosen['test_final']):.3f} ({final_share:.0%} of full tuning's gain at its last step)"
        )
    if "dpo" in rows:
        r = rows["dpo"]
        k, n = float(r["test_correct"]), int(r["test_n"])
        lo, hi = wilson(k, n)
        print(
            f"dpo: test reward accuracy {float(r['test_at_best']):.3f} ({k:g} of {n} pairs; 95% interval "
            f"{lo:.2f}-{hi:.2f}; chance 0.5), final {float(r['test_final']):.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text_path", required=True, help="a local copy of Gulliver's Travels (book 829)")
    parser.add_argument("--work", default="/tmp/lit_gpt5-pipeline", help="checkpoints and TensorBoard logs")
    parser.add_argument("--only", help="one run (the driver runs each in a process of its own)")
    parser.add_argument("--report", action="store_true", help="only print the tables from results.csv")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(args.work)
    if args.only:
        one(study().parse(args.only)[0], args.text_path, work)
        return
    if not args.report:
        machine = describe_machine()
        print(machine["line"], flush=True)
        (OUT / "machine.json").write_text(json.dumps(machine, indent=1) + "\n")
        study().run_all([(run,) for run in RUNS], ["--text_path", args.text_path, "--work", str(work)])
    report()


if __name__ == "__main__":
    main()
