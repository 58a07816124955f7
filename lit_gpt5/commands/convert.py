"""``lit-gpt5 convert``: GPT-2 weights to and from Hugging Face directories, and LoRA adapters out for PEFT.

lit-gpt5 convert to-hf --ckpt lightning_logs/version_0/checkpoints/last.ckpt --out gpt2-gulliver/
lit-gpt5 convert from-hf --hf_dir gpt2/ --out gpt2.ckpt
lit-gpt5 convert to-peft --ckpt lightning_logs/version_0/checkpoints/last.ckpt --out gpt2-lora/
"""

from __future__ import annotations

import json
from pathlib import Path

from lit_gpt5.commands.arguments import CommandParser
from lit_gpt5.errors import UserError
from lit_gpt5.files import check_output_dir, new_folder, write_bytes_atomic
from lit_gpt5.weights.checkpoints import load_checkpoint, save_checkpoint, tuning_template
from lit_gpt5.weights.hf import load_hf, save_hf
from lit_gpt5.weights.peft import save_peft_adapter


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser(
        prog="lit-gpt5 convert",
        description="GPT-2 weights to and from Hugging Face directories, and LoRA adapters out for PEFT.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    to_hf = sub.add_parser("to-hf", help="a lit_gpt5 .ckpt -> a Hugging Face GPT-2 directory")
    to_hf.add_argument("--ckpt", required=True, help="Lightning checkpoint written by `lit-gpt5 fit`")
    to_hf.add_argument("--out", required=True, help="directory to write config.json, model.safetensors, tokenizer")
    from_hf = sub.add_parser("from-hf", help="a Hugging Face GPT-2 directory -> a .ckpt for --model.init_from")
    from_hf.add_argument("--hf_dir", required=True, help="local directory with config.json and model.safetensors")
    from_hf.add_argument("--out", required=True, help="the .ckpt file to write")
    to_peft = sub.add_parser("to-peft", help="the LoRA adapters of a .ckpt -> a PEFT adapter directory")
    to_peft.add_argument("--ckpt", required=True, help="a checkpoint of a run with --model.lora_r N")
    to_peft.add_argument("--out", required=True, help="directory for adapter_config.json, adapter_model.safetensors")
    to_peft.add_argument("--base", default=None, help="recorded as base_model_name_or_path (e.g. the HF directory)")
    args = parser.parse_args(argv)
    out = Path(args.out).expanduser()
    if args.command == "to-peft":
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is an existing file; pass a directory (it is created if missing)")
        check_output_dir(out, "--out")
        model = load_checkpoint(args.ckpt, merge=False)
        with new_folder(out):
            save_peft_adapter(model, out, args.base)
        print(f"wrote {args.out}: LoRA adapters; load them with peft.PeftModel.from_pretrained(GPT2LMHeadModel, ...)")
        return
    if args.command == "to-hf":
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is an existing file; pass a directory (it is created if missing)")
        check_output_dir(out, "--out")
        model = load_checkpoint(args.ckpt)
        template = tuning_template(args.ckpt)
        with new_folder(out):
            save_hf(model, out)
            if template is not None:  # so `lit-gpt5 generate --instruction` formats prompts as in tuning
                write_bytes_atomic(out / "lit_gpt5.json", (json.dumps({"template": template}) + "\n").encode())
        print(f"wrote {args.out}: {model.num_params():,} parameters; load it with GPT2LMHeadModel.from_pretrained")
    else:
        if out.is_dir():
            raise UserError(f"--out {out} is a directory; pass the path of the .ckpt file to write")
        check_output_dir(out.parent, "--out", shown=out)
        model = load_hf(args.hf_dir)
        save_checkpoint(model, args.out)
        print(f"wrote {args.out}: {model.num_params():,} parameters; start from it with --model.init_from {args.out}")


if __name__ == "__main__":
    from lit_gpt5.errors import run_main

    run_main(main)
