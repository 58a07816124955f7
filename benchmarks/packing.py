"""Packing against padding: the share of each batch that is padding, and supervised tokens trained per second.

    python benchmarks/packing.py --text_path ../shared/data/gutenberg/829-0.txt     # CPU; the GPU when there is one

Three ways to batch the same records, for instruction tuning (SFT) and preference pairs (DPO):

* ``padded``: batches of random records, each padded to its longest (``--data.bucket_by_length false``);
* ``bucketed``: batches of records of similar length (the default, ``--data.bucket_by_length true``);
* ``packed``: records packed into rows of ``max_length`` positions (``--data.packing true``), first-fit decreasing.

Two sets: the built-in Gulliver instructions (and their preference pairs), and a synthetic set with Alpaca-like
lengths (a log-normal fit, not Alpaca itself: prompts with the template median 70 tokens, responses median 45 with a
tail to ``max_length``; 2,000 records). Each runs ``--steps`` training steps of the same model (forward, chunked
loss, backward, fused AdamW) after 2 warm-up steps, at the same number of *examples* per step for padded and
bucketed and the same number of positions for packed. Prints, per set and kind: padding share (positions that are
neither a prompt nor a response token), supervised tokens per step, median step time and supervised tokens/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402


def synthetic_records(n: int, max_length: int, seed: int = 0) -> list[dict]:
    """Records whose prompt and response lengths follow a log-normal fit of Alpaca-like data."""
    rng = np.random.default_rng(seed)
    prompt = np.clip(rng.lognormal(np.log(50), 0.45, n), 5, max_length // 2).astype(int)
    response = np.clip(rng.lognormal(np.log(45), 0.9, n), 2, max_length - 80).astype(int)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    return [
        {"instruction": " ".join(rng.choice(words, p)), "output": " ".join(rng.choice(words, r))}
        for p, r in zip(prompt, response, strict=True)
    ]


def gulliver_sets(text_path: str) -> tuple[list[dict], list[dict]]:
    from lit_gpt5.data.gulliver import GulliverInstructDataModule, GulliverPreferenceDataModule

    return (
        GulliverInstructDataModule(text_path=text_path).load_records()[0],
        GulliverPreferenceDataModule(text_path=text_path).load_records()[0],
    )


def synthetic_pairs(records: list[dict]) -> list[dict]:
    """Pairs of the synthetic records: the response against the next record's."""
    return [
        {"instruction": r["instruction"], "chosen": r["output"], "rejected": records[(i + 1) % len(records)]["output"]}
        for i, r in enumerate(records)
    ]


def batches(dataset, kind: str, batch_size: int, width: int, count: int) -> list:
    from lit_gpt5.data.batching import SFTBatches

    stream = SFTBatches(
        dataset, batch_size, seed=0, bucket=kind == "bucketed", pack_width=width if kind == "packed" else None
    )
    return [stream.global_batch(i) for i in range(count)]


def supervised(batch) -> int:
    return int((batch[1] != -100).sum())


def padding_share(batch) -> float:
    if len(batch) >= 4:  # packed: segment -1 is padding
        return float((batch[3] == -1).float().mean())
    # padded: positions past each row's own length (targets -100 at the end of the row)
    real = (batch[1] != -100).flip(1).cumsum(1).flip(1) > 0  # up to the last supervised position of each row
    return 1 - float(real.float().mean())


def time_steps(module, batch_list, pairs: bool, device: str) -> list[float]:
    from lit_gpt5.tuning.dpo import dpo_loss, sequence_logps

    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-5, fused=True)
    times = []
    for i, batch in enumerate(batch_list):
        batch = [t.to(device) for t in batch]
        start = time.perf_counter()
        if pairs:
            x, y, *packed, index = batch
            logps = sequence_logps(module, x, y, 512, *packed)
            n = len(index)
            losses, _, _ = dpo_loss(logps[:n], logps[n:], logps[:n].detach(), logps[n:].detach())
            loss = losses.mean()
        else:
            x, y, *packed = batch
            positions, segments = packed or (None, None)
            total, count = module.loss_sum(x, y, 512, input_pos=positions, segments=segments)
            loss = total / count
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    from lit_gpt5.data.instructions import SFTDataset
    from lit_gpt5.data.preferences import PreferenceDataset
    from lit_gpt5.model.gpt import GPT, GPTConfig
    from lit_gpt5.model.tokenizer import get_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text_path", required=True, help="Gulliver's Travels (for the built-in set)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=8, help="examples (pairs) per padded step")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json_out", default="packing.json")
    args = parser.parse_args()
    machine = describe_machine()
    print(machine["line"])
    tok = get_tokenizer()
    gulliver_sft, gulliver_dpo = gulliver_sets(args.text_path)
    alpaca = synthetic_records(2000, 512)
    sets = {
        ("gulliver", "sft"): (SFTDataset(gulliver_sft, tok, 256, "plain"), 256),
        ("gulliver", "dpo"): (PreferenceDataset(gulliver_dpo, tok, 256, "plain"), 256),
        ("alpaca-like", "sft"): (SFTDataset(alpaca, tok, 512, "alpaca"), 512),
        ("alpaca-like", "dpo"): (PreferenceDataset(synthetic_pairs(alpaca), tok, 512, "alpaca"), 512),
    }
    rows = []
    print(f"{'set':<12}{'kind':<5}{'batching':<10}{'padding':>9}{'sup/step':>10}{'step s':>9}{'sup tok/s':>11}")
    for (name, kind), (dataset, max_length) in sets.items():
        torch.manual_seed(0)
        model = GPT(GPTConfig.from_name("gpt-micro", block_size=max_length)).to(args.device)
        pairs = kind == "dpo"
        lengths = np.array(dataset.packed_lengths())
        width = max_length * (2 if pairs else 1)
        # Packed rows per step: as many positions as a padded step of batch_size mean-length examples.
        packed_rows = max(1, round(args.batch_size * lengths.mean() / width))
        for batching in ("padded", "bucketed", "packed"):
            size = packed_rows if batching == "packed" else args.batch_size
            batch_list = batches(dataset, batching, size, width, args.steps + 2)
            times = time_steps(model, batch_list, pairs, args.device)
            sup = statistics.fmean(supervised(b) for b in batch_list[2:])
            pad = statistics.fmean(padding_share(b) for b in batch_list[2:])
            step = statistics.median(times)
            rows.append({"set": name, "kind": kind, "batching": batching, "padding_share": pad,
                         "supervised_per_step": sup, "step_s": step, "supervised_per_s": sup / step})  # fmt: skip
            print(f"{name:<12}{kind:<5}{batching:<10}{pad:>9.1%}{sup:>10.0f}{step:>9.3f}{sup / step:>11,.0f}")
    Path(args.json_out).write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
