"""The reward-KL frontier of preference tuning on a known reward: DPO, IPO, cDPO and RLOO across their KL strength.

    python benchmarks/preference_frontier.py --shared ../shared      # every step still missing; resumable

The DPO paper's first experiment, on the three shared books and a 2-core CPU:

1. **base**: gpt-micro (4 layers of 128) pretrained on the three books together (the multi-book data module;
   500 steps of 16 x 256, precision ``auto``): the reference pi_ref and every run's starting point.
2. **reward and pairs** (``lit-gpt5 reward pairs``): the known reward is "reads like Gulliver's Travels rather than
   Pride and Prejudice or Frankenstein" (``lit_gpt5.tuning.rewards``); 1,200 prompts of 16 tokens from the books'
   training parts (400 per book), 4 continuations of 32 tokens sampled from the base for each, the best and the worst
   by reward a pair; 96 held-out prompts (32 per book) from the books' held-out parts.
3. **runs**: DPO at beta 0.05, 0.1, 0.2 and 0.5, IPO at 0.1, cDPO (label smoothing 0.2) at 0.1, and RLOO at KL
   coefficients 0.03, 0.1, 0.3 and 1.0, each 30 steps (DPO: 16 pairs a step, 480 of the 1,079 training pairs; RLOO:
   8 prompts x 4 samples a step), learning rate 1e-4 after 10 warm-up steps; seeds 0, 1 and 2 each (the seed sets
   the order of the pairs or prompts and the samples RLOO draws; the base and the pairs are the same for every run).
4. **evaluation**: each final policy's mean known reward and KL(pi || pi_ref) per token on 4 fixed-seed samples of
   each held-out prompt (``lit_gpt5.tuning.rollouts.evaluate_policy``), and the base's own (KL 0).

Results, appended as each run finishes (runs already in ``frontier.csv`` are skipped):
``notebooks/results/preference/setup.json`` (the reward's held-out accuracy, the pairs, the base's loss),
``frontier.csv`` (``method,beta,seed,steps,reward,reward_sem,kl,kl_sem,kl_per_sequence,train_seconds``),
``curves.csv`` (validation metrics per step) and ``samples.json`` (continuations before and after). Notebook 04
reads them. Checkpoints and pairs stay in ``--work`` (the pairs hold passages of the books: not committed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402
from _study import Study, append  # noqa: E402

REPO = HERE.parent
OUT = REPO / "notebooks" / "results" / "preference"
BOOKS = ["829-0.txt", "1342-0.txt", "84-0.txt"]
TARGET = "829-0"
BASE_STEPS, BATCH, BLOCK = 500, 16, 256
DPO_STEPS, RLOO_STEPS, VAL_EVERY = 30, 30, 30  # ~2 min a run on one core: 30 runs in half an hour on 2
# method -> (loss type or "rloo", label smoothing, the betas / KL coefficients)
METHODS = {
    "dpo": ("sigmoid", 0.0, [0.05, 0.1, 0.2, 0.5]),
    "ipo": ("ipo", 0.0, [0.1]),
    "cdpo": ("sigmoid", 0.2, [0.1]),
    "rloo": ("rloo", 0.0, [0.03, 0.1, 0.3, 1.0]),
}
SEEDS = [0, 1, 2]
FRONTIER = ["method", "beta", "seed", "steps", "reward", "reward_sem", "kl", "kl_sem", "kl_per_sequence"]
FRONTIER += ["train_seconds"]
CURVES = ["method", "beta", "seed", "step", "metric", "value"]


def grid() -> list[tuple[str, float, int]]:
    """Every run, one seed of every configuration first: a session that stops early has the whole frontier once."""
    return [(m, beta, seed) for seed in SEEDS for m, (_, _, betas) in METHODS.items() for beta in betas]


def study(out: Path) -> Study:
    """The study's runs, keyed by (method, beta, seed); a run is done when its point is in ``frontier.csv``."""
    return Study(Path(__file__), out / "frontier.csv", ("method", "beta", "seed"), (str, float, int))


def base(shared: Path, work: Path, out: Path, steps: int) -> Path:
    """Pretrain the base on the three books (once); its checkpoint is the reference of every run."""
    ckpt = work / "base.ckpt"
    if ckpt.exists():
        return ckpt
    from lit_gpt5.data import GutenbergDataModule
    from lit_gpt5.tools.studies import read_scalars, train
    from lit_gpt5.training.module import GPTLitModule
    from lit_gpt5.weights.checkpoints import save_checkpoint

    start = time.perf_counter()
    module = GPTLitModule(model_name="gpt-micro", dropout=0.1, learning_rate=2e-3, min_lr=1e-4, warmup_steps=20)
    data = GutenbergDataModule(text_paths=[str(shared / "data" / "gutenberg" / b) for b in BOOKS], block_size=BLOCK,
                               batch_size=BATCH, val_batch_size=64)  # fmt: skip
    log_dir = train(module, data, work / "runs", "base", max_steps=steps, val_every=max(1, steps // 5))
    save_checkpoint(module.model, ckpt)
    scalars = read_scalars(log_dir)
    setup = {"base": {"model": "gpt-micro", "steps": steps, "batch": f"{BATCH} x {BLOCK}",
                      "seconds": time.perf_counter() - start,
                      **{tag: values[-1] for tag, (_, values) in scalars.items()
                         if tag.startswith("val/loss")}}}  # fmt: skip
    (out / "setup.json").write_text(json.dumps(setup, indent=1) + "\n")
    return ckpt


def pairs(shared: Path, work: Path, out: Path, ckpt: Path) -> Path:
    """The reward's spec, the pairs and the prompts (once), and the reward's held-out accuracy in setup.json."""
    folder = work / "pairs"
    if (folder / "reward.json").exists():
        return folder
    from lit_gpt5.commands.reward import main as reward

    books = [str(shared / "data" / "gutenberg" / b) for b in BOOKS]
    reward(["pairs", "--ckpt", str(ckpt), "--text_paths", *books, "--target", TARGET, "--out", str(folder)])
    from lit_gpt5.commands.reward import info

    accuracy = info(argparse.Namespace(text_paths=books, book_ids=[], target=TARGET, val_fraction=0.1,
                                       max_new_tokens=32, cache_dir=None))  # fmt: skip
    spec = json.loads((folder / "reward.json").read_text())
    setup = json.loads((out / "setup.json").read_text())
    setup["reward"] = {k: v for k, v in accuracy.items() if k not in ("spec", "books")}
    setup["pairs"] = spec["pairs"]
    (out / "setup.json").write_text(json.dumps(setup, indent=1) + "\n")
    return folder


def evaluate(policy, ckpt: Path, folder: Path) -> dict:
    from lit_gpt5.data.records import read_json_records
    from lit_gpt5.data.rollout_prompts import normalize_prompt
    from lit_gpt5.tuning.rewards import load_reward
    from lit_gpt5.tuning.rollouts import evaluate_policy
    from lit_gpt5.weights.checkpoints import frozen_model

    prompts = [r["prompt_ids"] for r in read_json_records(folder / "eval_prompts.jsonl", normalize_prompt)]
    reference = frozen_model(ckpt)
    return evaluate_policy(policy.float().cpu(), reference, load_reward(str(folder / "reward.json")), prompts, 4, 32)


def shown(policy, folder: Path, n: int = 6) -> list[dict]:
    """Continuations of the first two held-out prompts of each book, fixed seed: before and after, side by side."""
    import torch

    from lit_gpt5.data.records import read_json_records
    from lit_gpt5.data.rollout_prompts import normalize_prompt
    from lit_gpt5.model.tokenizer import get_tokenizer
    from lit_gpt5.tuning.rewards import load_reward
    from lit_gpt5.tuning.rollouts import rollout_seed, sample_continuations

    records = read_json_records(folder / "eval_prompts.jsonl", normalize_prompt)
    per_book: dict[str, list[dict]] = {}
    for r in records:
        per_book.setdefault(r["book"], []).append(r)
    picked = [r for rows in per_book.values() for r in rows[: n // len(per_book)]]
    prompts = [r["prompt_ids"] for r in picked]
    completions = sample_continuations(policy, prompts, 1, 32, rollout_seed(0, "shown"))
    reward, tok = load_reward(str(folder / "reward.json")), get_tokenizer()
    return [{"book": r["book"], "prompt": tok.decode(p), "continuation": tok.decode(c.tolist()),
             "reward": float(reward(torch.tensor([p[-1]]), c[None]))}
            for r, p, c in zip(picked, prompts, completions, strict=True)]  # fmt: skip


def one_run(method: str, beta: float, seed: int, work: Path, out: Path, steps: int | None) -> None:
    """Train one run from the base and append its point of the frontier (called in a process of its own)."""
    from lit_gpt5.tools.studies import read_scalars, train

    ckpt, folder = work / "base.ckpt", work / "pairs"
    loss_type, smoothing, _ = METHODS[method]
    start = time.perf_counter()
    if method == "rloo":
        from lit_gpt5.data.rollout_prompts import PromptDataModule
        from lit_gpt5.tuning.rloo import RLOOLitModule

        steps = steps or RLOO_STEPS
        module = RLOOLitModule(init_from=str(ckpt), reward=str(folder / "reward.json"), kl_coef=beta,
                               learning_rate=1e-4, min_lr=1e-5, warmup_steps=10, weight_decay=0.0)  # fmt: skip
        data = PromptDataModule(train_path=str(folder / "train_prompts.jsonl"),
                                val_path=str(folder / "eval_prompts.jsonl"), batch_size=8, val_batch_size=48,
                                seed=seed)  # fmt: skip
    else:
        from lit_gpt5.data.preferences import PreferenceDataModule
        from lit_gpt5.tuning.dpo import DPOLitModule

        steps = steps or DPO_STEPS
        module = DPOLitModule(init_from=str(ckpt), beta=beta, loss_type=loss_type, label_smoothing=smoothing,
                              learning_rate=1e-4, min_lr=1e-5, warmup_steps=10, weight_decay=0.0)  # fmt: skip
        data = PreferenceDataModule(train_path=str(folder / "pairs.jsonl"), template="none", max_length=64,
                                    batch_size=16, val_batch_size=64, seed=seed)  # fmt: skip
    log_dir = train(module, data, work / "runs", f"{method}-{beta}", max_steps=steps,
                    val_every=min(VAL_EVERY, steps), seed=seed)  # fmt: skip
    seconds = time.perf_counter() - start
    point = evaluate(module.model, ckpt, folder)
    curves = [{"method": method, "beta": beta, "seed": seed, "step": s, "metric": tag, "value": f"{v:.6f}"}
              for tag, (steps_, values) in read_scalars(log_dir).items() if tag.startswith("val/")
              for s, v in zip(steps_, values, strict=True)]  # fmt: skip
    append(out / "curves.csv", CURVES, curves)
    if seed == 0:
        samples = json.loads((out / "samples.json").read_text()) if (out / "samples.json").exists() else {}
        samples[f"{method} {beta}"] = shown(module.model.float().cpu(), folder)
        (out / "samples.json").write_text(json.dumps(samples, indent=1) + "\n")
    row = {"method": method, "beta": beta, "seed": seed, "steps": steps, "reward": f"{point['reward']:.6f}",
           "reward_sem": f"{point['reward_sem']:.6f}", "kl": f"{point['kl']:.6f}", "kl_sem": f"{point['kl_sem']:.6f}",
           "kl_per_sequence": f"{point['kl_per_sequence']:.4f}", "train_seconds": f"{seconds:.1f}"}  # fmt: skip
    append(out / "frontier.csv", FRONTIER, [row])  # last: a run is done when its point is written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(REPO.parent / "shared"), help="the folder holding data/gutenberg/")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--work", default=str(REPO / "notebooks" / "runs" / "preference"), help="checkpoints, pairs")
    parser.add_argument("--only", help="one run, method:beta:seed")
    parser.add_argument("--max_runs", type=int, default=None, help="stop after this many runs")
    parser.add_argument("--steps", type=int, default=None, help="training steps of every run (default: the study's)")
    parser.add_argument("--base_steps", type=int, default=BASE_STEPS)
    args = parser.parse_args()
    out, shared, work = Path(args.out), Path(args.shared), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    if args.only:
        method, beta, seed = study(out).parse(args.only)
        one_run(method, beta, seed, work, out, args.steps)
        return
    print(describe_machine()["line"])
    ckpt = base(shared, work, out, args.base_steps)
    folder = pairs(shared, work, out, ckpt)
    if ("reference", 0.0, 0) not in study(out).done():
        from lit_gpt5.weights.checkpoints import frozen_model

        policy = frozen_model(ckpt)
        point = evaluate(policy, ckpt, folder)
        samples = json.loads((out / "samples.json").read_text()) if (out / "samples.json").exists() else {}
        samples["reference"] = shown(policy, folder)
        (out / "samples.json").write_text(json.dumps(samples, indent=1) + "\n")
        append(out / "frontier.csv", FRONTIER, [{"method": "reference", "beta": 0.0, "seed": 0, "steps": 0,
               "reward": f"{point['reward']:.6f}", "reward_sem": f"{point['reward_sem']:.6f}", "kl": "0.000000",
               "kl_sem": "0.000000", "kl_per_sequence": "0.0000", "train_seconds": "0.0"}])  # fmt: skip
    args_of_a_run = ["--out", str(out), "--work", str(work)] + (["--steps", str(args.steps)] if args.steps else [])
    study(out).run_all(grid(), args_of_a_run, args.max_runs)


if __name__ == "__main__":
    main()
