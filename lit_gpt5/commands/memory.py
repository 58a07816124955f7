"""``lit-gpt5 memory``: how much GPU memory a training step needs, before you start it, and what makes it fit.

    lit-gpt5 memory --model gpt2-large --block_size 1024 --micro_batch_size 8 --gpu_memory 24GiB

The estimate itself, and what each term counts: ``lit_gpt5.training.memory_estimate``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict

from lit_gpt5.commands.arguments import CommandParser
from lit_gpt5.errors import UserError
from lit_gpt5.model.lora import ALL_TARGETS as LORA_ALL_TARGETS
from lit_gpt5.model.lora import TARGETS as LORA_TARGETS
from lit_gpt5.training.memory_estimate import DEFAULT_LOSS_CHUNK, PRECISIONS, STRATEGIES, estimate, suggestions


def parse_size(text: str) -> int:
    """'24GiB', '24G' (GiB), '80GB' (10^9 bytes), '512MiB', or a plain number of bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(?:([KMGT])(i?B|B)?)?\s*", text, re.IGNORECASE)
    if not m:
        raise UserError(f"--gpu_memory {text!r} is not a size; write e.g. 24GiB, 80GB or 16G")
    power = "KMGT".index(m.group(2).upper()) + 1 if m.group(2) else 0
    base = 1000 if (m.group(3) or "").upper() == "B" else 1024
    return int(float(m.group(1)) * base**power)


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser(prog="lit-gpt5 memory", description="How much GPU memory a training step needs.")
    parser.add_argument("--model", default="gpt2", help="a model name (gpt2, gpt2-medium, gpt2-large, gpt2-xl, ...)")
    parser.add_argument("--block_size", type=int, default=1024, help="training sequence length T")
    parser.add_argument("--micro_batch_size", type=int, default=8, help="sequences per device per forward")
    parser.add_argument("--precision", default="bf16-mixed", choices=PRECISIONS)
    parser.add_argument("--activation_checkpointing", action="store_true")
    parser.add_argument("--strategy", default="ddp", choices=STRATEGIES)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--cpu_offload", action="store_true")
    parser.add_argument(
        "--loss_chunk_size",
        type=int,
        default=DEFAULT_LOSS_CHUNK,
        help=f"positions per chunk of the loss's vocabulary projection (training's default: {DEFAULT_LOSS_CHUNK}); "
        "0: the full-logits loss",
    )
    parser.add_argument("--lora_r", type=int, default=0, help="LoRA rank (--model.lora_r); 0: full fine-tuning")
    parser.add_argument(
        "--lora_targets",
        nargs="+",
        default=list(LORA_TARGETS),
        metavar="NAME",
        help=f"layers with adapters (--model.lora_targets), among {' '.join(LORA_ALL_TARGETS)}; default: the blocks'",
    )
    parser.add_argument("--gpu_memory", type=parse_size, default=None, help="e.g. 24GiB: say whether it fits")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = vars(parser.parse_args(argv))
    gpu_memory, as_json = args.pop("gpu_memory"), args.pop("json")
    est = estimate(**args)
    fits = None if gpu_memory is None else est.peak <= gpu_memory
    advice = suggestions(args, gpu_memory) if fits is False else []
    if as_json:
        print(json.dumps({**asdict(est), "settings": args, "gpu_memory": gpu_memory, "fits": fits, "advice": advice}))
        return
    print(
        f"{args['model']}, T={args['block_size']}, micro-batch {args['micro_batch_size']}, {args['precision']}, "
        f"{args['strategy']} x{args['devices']}"
        + (", activation checkpointing" if args["activation_checkpointing"] else "")
        + (f", chunked loss ({args['loss_chunk_size']} positions)" if args["loss_chunk_size"] else ", full-logits loss")
        + (", CPU offload" if args["cpu_offload"] else "")
        + (f", LoRA r={args['lora_r']} on {' '.join(args['lora_targets'])}" if args["lora_r"] else "")
    )
    print(est.table(gpu_memory))
    if advice:
        print("what makes it fit (each alone):")
        print("\n".join(f"  - {line}" for line in advice))
    elif fits is False:
        print("nothing tried alone or together fits; use more GPUs (--strategy fsdp --devices N)")


if __name__ == "__main__":
    from lit_gpt5.errors import run_main

    run_main(main)
