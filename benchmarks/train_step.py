"""Training step time: our GPT (GPTLitModule's loss) against ``transformers.GPT2LMHeadModel``, same config, weights
and batch, alternated in one process so that both see the same machine.

    python benchmarks/train_step.py                     # GPT-2 small, Model 5's 16 x 256 tokens, precision auto
    python benchmarks/train_step.py --batch_size 4      # a small batch: the per-step fixed costs weigh more
    python benchmarks/train_step.py --only transformers # one library in a process of its own: no heap shared
    python benchmarks/train_step.py --precision 32 --model gpt-micro --batch_size 8

A step is forward, loss, backward and an AdamW step (fused for both by default: what GPTLitModule and transformers'
Trainer use); ours uses the chunked loss (the default), transformers its own ``labels=`` loss. ``--precision auto``
(the default) is what ``--trainer.precision auto`` picks on this machine: bf16 autocast where it is native, else
float32. Prints the median and
mean step time of each (over --rounds alternations, after two warm-up rounds), the ratio of the medians (the figure)
and of the means, and how many steps page-faulted fresh memory in (transformers' full float32 logits
make its heap grow again every few steps on a CPU); writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402


def main() -> None:
    import transformers

    from lit_gpt5.training.module import GPTLitModule
    from lit_gpt5.training.trainer import keep_freed_memory
    from lit_gpt5.weights.hf import config_to_hf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2")
    parser.add_argument("--batch_size", type=int, default=16, help="default: Model 5's batch (configs/model5.yaml)")
    parser.add_argument("--block_size", type=int, default=256)
    parser.add_argument(
        "--precision", choices=["auto", "bf16", "32"], default="auto", help="auto: as --trainer.precision auto resolves"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--optimizer", choices=["fused", "foreach"], default="fused")
    parser.add_argument("--only", choices=["lit_gpt5", "transformers"], help="time one of them alone (no ratio)")
    parser.add_argument("--compile", action="store_true", help="ours with --model.compile true (transformers eager)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json_out", default="train_step.json")
    args = parser.parse_args()
    machine = describe_machine()
    print(machine["line"])
    if args.precision == "auto":
        from lit_gpt5.training.trainer import resolve_precision

        resolved, _ = resolve_precision("auto", args.device)
        args.precision = "bf16" if resolved.startswith("bf16") else "32"
        print(f"precision auto resolves to {resolved} here")
    keep_freed_memory()  # as the CLI does
    torch.manual_seed(0)
    ours = GPTLitModule(model_name=args.model, dropout=0.0, compile=args.compile).to(args.device)
    hf_config = transformers.GPT2Config(
        attn_implementation="sdpa", **{k: v for k, v in config_to_hf(ours.config).items() if k != "torch_dtype"}
    )
    theirs = transformers.GPT2LMHeadModel(hf_config).to(args.device)
    state = {k: v for k, v in ours.model.state_dict().items() if k != ours.model.tied_key}
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    theirs.load_state_dict({k: v.t() if k.endswith(conv1d) else v for k, v in state.items()}, strict=False)
    tokens = torch.randint(0, 50257, (args.batch_size, args.block_size + 1), device=args.device)
    x, y = tokens[:, :-1], tokens[:, 1:]
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    # Fused AdamW for both: what our configure_optimizers and transformers' Trainer (optim="adamw_torch_fused") use.
    fused = args.optimizer == "fused"

    def ours_step(optimizer=torch.optim.AdamW(ours.parameters(), lr=1e-4, fused=fused)):
        with autocast:
            total, count = ours.loss_sum(x, y)
        (total / count).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def theirs_step(optimizer=torch.optim.AdamW(theirs.parameters(), lr=1e-4, fused=fused)):
        with autocast:
            loss = theirs(input_ids=x, labels=x).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    steps = {"lit_gpt5": ours_step, "transformers": theirs_step}
    steps = {args.only: steps[args.only]} if args.only else steps
    times = {name: [] for name in steps}
    faults = {name: [] for name in steps}  # minor page faults: fresh memory the step had to touch
    # The first steps page-fault their buffers in (and compile, with --compile): not the steady state.
    warmup = 4 if args.compile else 2
    for round_ in range(args.rounds + warmup):
        for name, step in steps.items():
            faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            step()
            if args.device == "cuda":
                torch.cuda.synchronize()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
                faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before)
    medians = {name: statistics.median(t) for name, t in times.items()}
    means = {name: statistics.fmean(t) for name, t in times.items()}
    ratio = None if args.only else medians["lit_gpt5"] / medians["transformers"]
    compiled = "ours compiled, " if args.compile else ""
    print(f"{args.model}, {args.batch_size} x {args.block_size} tokens, {args.precision}, {args.device}, "
          f"{args.optimizer} AdamW, {compiled}transformers {transformers.__version__}")  # fmt: skip
    tokens = args.batch_size * args.block_size
    for name, seconds in medians.items():
        faulted = f"{sum(f > 1000 for f in faults[name])} of {len(faults[name])}"  # > 4 MB of fresh pages
        print(f"  {name:<13} median {seconds:.3f} s per step ({tokens / seconds:,.0f} tokens/s), "
              f"mean {means[name]:.3f} s; {faulted} steps page-faulted fresh memory in")  # fmt: skip
    if ratio is not None:
        print(f"  ratio (ours / transformers): {ratio:.2f} of the medians, "
              f"{means['lit_gpt5'] / means['transformers']:.2f} of the means")  # fmt: skip
    with open(args.json_out, "w") as f:
        json.dump({"machine": machine, "settings": vars(args), "seconds": times, "minor_page_faults": faults,
                   "median": medians, "mean": means, "ratio": ratio}, f, indent=1)  # fmt: skip


if __name__ == "__main__":
    main()
