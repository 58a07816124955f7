"""``lit-gpt5 generate``: text from a lit_gpt5 checkpoint or a Hugging Face GPT-2 directory, printed as it is sampled.

lit-gpt5 generate --ckpt lightning_logs/version_0/checkpoints/last.ckpt --prompt "The Emperor"
lit-gpt5 generate --ckpt path/to/hf-gpt2-dir --prompt "Once upon a time" --temperature 0
"""

from __future__ import annotations

import argparse
import sys

import torch

from lit_gpt5.commands.arguments import CommandParser, check_device
from lit_gpt5.errors import UserError
from lit_gpt5.model.generate import check_sampling, stream
from lit_gpt5.model.gpt import GPT
from lit_gpt5.model.prompts import format_prompt
from lit_gpt5.model.tokenizer import EOT_ID, get_tokenizer
from lit_gpt5.weights.checkpoints import load_model, tuning_template


def _print_stream(model: GPT, prompt_ids: list[int], args: argparse.Namespace, stop_token: int) -> None:
    tokenizer = get_tokenizer()
    generated: list[int] = []
    printed = ""
    for nxt in stream(
        model, [prompt_ids], args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed, stop_token
    ):
        token = int(nxt[0])
        if token == stop_token:
            break
        generated.append(token)
        text = tokenizer.decode(generated)
        # A character can span several byte-level tokens: wait until it is complete before printing it.
        if not text.endswith("\ufffd"):
            sys.stdout.write(text[len(printed) :])
            sys.stdout.flush()
            printed = text
    sys.stdout.write(tokenizer.decode(generated)[len(printed) :] + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser(prog="lit-gpt5 generate", description="Generate text from a GPT-2.")
    parser.add_argument("--ckpt", required=True, help="a lit_gpt5 .ckpt or a Hugging Face GPT-2 directory")
    parser.add_argument("--prompt", default="\n", help="text to continue")
    parser.add_argument(
        "--instruction", help="an instruction for a tuned model: formatted with --template, only the response printed"
    )
    parser.add_argument("--input", default="", help="the instruction's input (context), if any")
    parser.add_argument(
        "--template", default=None, help="prompt template (default: the one the checkpoint was tuned with, or alpaca)"
    )
    parser.add_argument("--max_new_tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top_k", type=int, default=None)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    check_sampling(args.max_new_tokens, args.temperature, args.top_k, args.top_p)
    device = check_device(args.device)
    model = load_model(args.ckpt).to(device)
    if args.instruction is not None:
        template = args.template or tuning_template(args.ckpt) or "alpaca"
        prompt_ids = get_tokenizer().encode_ordinary(format_prompt(args.instruction, args.input, template))
    else:
        prompt_ids = get_tokenizer().encode_ordinary(args.prompt)
        if not prompt_ids:
            raise UserError("--prompt is empty; give at least one character")
        sys.stdout.write(args.prompt)
    _print_stream(model, prompt_ids, args, EOT_ID)


if __name__ == "__main__":
    from lit_gpt5.errors import run_main

    run_main(main)
