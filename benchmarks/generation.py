"""Generation speed: our KV cache vs no cache vs Hugging Face ``generate``, same weights, same machine, one run.

    python benchmarks/generation.py                      # GPT-2 small (124M), 256 new tokens, batch 1
    python benchmarks/generation.py --model gpt2-medium --device cuda --batch_size 8

Weights are random (GPT-2's init, seeded): speed does not depend on what the weights say, and the benchmark needs
no download. Greedy decoding of exactly ``--new_tokens`` tokens; the three outputs are checked to be identical.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from lit_gpt5.model.generate import generate
from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.weights.hf import save_hf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe_machine  # noqa: E402


def timed(fn, device: str) -> tuple[float, torch.Tensor]:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2")
    parser.add_argument("--new_tokens", type=int, default=256)
    parser.add_argument("--prompt_tokens", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3, help="best of N rounds, methods interleaved in each")
    parser.add_argument("--skip_no_cache", action="store_true", help="the slow baseline; skip it on big models")
    args = parser.parse_args()
    print(describe_machine()["line"])

    import transformers

    torch.manual_seed(0)
    ours = GPT(GPTConfig.from_name(args.model)).to(args.device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        save_hf(ours, tmp, tokenizer=False)
        hf = transformers.GPT2LMHeadModel.from_pretrained(tmp).to(args.device).eval()
    prompt = torch.randint(0, 50257, (args.batch_size, args.prompt_tokens), device=args.device)
    n = args.new_tokens

    def hf_generate():
        with torch.inference_mode():
            out = hf.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                do_sample=False,
                max_new_tokens=n,
                min_new_tokens=n,
                pad_token_id=50256,
            )
        return out

    runs = {
        "lit_gpt5, KV cache": lambda: generate(ours, prompt, n, temperature=0, use_cache=True),
        "transformers generate": hf_generate,
    }
    if not args.skip_no_cache:
        runs["lit_gpt5, no cache"] = lambda: generate(ours, prompt, n, temperature=0, use_cache=False)
    threads = torch.get_num_threads()
    print(
        f"{args.model} ({ours.num_params() / 1e6:.1f}M), device={args.device} (torch threads: {threads}), "
        f"batch {args.batch_size}, prompt {args.prompt_tokens} + {n} new tokens, greedy; torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )
    for fn in runs.values():
        fn()  # warm-up
    # Rounds of every method in turn, best of each: a slow moment of a shared machine hits all methods alike.
    best, outputs = dict.fromkeys(runs, float("inf")), {}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            seconds, outputs[name] = timed(fn, args.device)
            best[name] = min(best[name], seconds)
    results = {}
    for name, seconds in best.items():
        results[name] = args.batch_size * n / seconds
        print(f"{name:24s} {seconds:8.2f} s   {results[name]:9.1f} tokens/s   (best of {args.repeats})")
    reference = outputs["lit_gpt5, KV cache"].tolist()
    same = all(out.tolist() == reference for out in outputs.values())
    print(f"identical tokens across all runs: {same}")
    cached, hf_speed = results["lit_gpt5, KV cache"], results["transformers generate"]
    if "lit_gpt5, no cache" in results:
        print(f"KV cache speed-up over no cache: {cached / results['lit_gpt5, no cache']:.1f}x")
    print(f"lit_gpt5 (cache) vs transformers: {cached / hf_speed:.2f}x")


if __name__ == "__main__":
    main()
