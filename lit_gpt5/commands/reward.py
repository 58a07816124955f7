"""``lit-gpt5 reward``: the known-reward experiment of preference tuning, from the books to the reward-KL frontier.

    lit-gpt5 reward info  --text_paths 829-0.txt 1342-0.txt 84-0.txt --target 829-0
    lit-gpt5 reward pairs --ckpt base.ckpt --text_paths 829-0.txt 1342-0.txt 84-0.txt --target 829-0 --out pairs/
    lit-gpt5 reward eval  --ckpt dpo.ckpt --reference base.ckpt --reward pairs/reward.json \\
                          --prompts pairs/eval_prompts.jsonl --json_out dpo.json

``info`` reports how well the reward tells the books' held-out passages apart. ``pairs`` writes, into a new folder:
``reward.json`` (the reward's spec), ``pairs.jsonl`` (for each training prompt, the best and the worst by reward of
``--samples`` continuations sampled from ``--ckpt``: what ``PreferenceDataModule`` reads, with ``--data.template
none``), ``train_prompts.jsonl`` (the same prompts, for RLOO) and ``eval_prompts.jsonl`` (openings of *held-out*
passages, for ``eval`` and validation). Prompts are ``--prompt_tokens`` tokens at random places in each book's
training (or held-out) part, as many from each book. ``eval`` puts a policy on the reward-KL plane
(``lit_gpt5.tuning.rollouts.evaluate_policy``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from lit_gpt5.commands.arguments import CommandParser, check_device
from lit_gpt5.errors import UserError


def prompt_openings(
    tokens: torch.Tensor, ranges: list[tuple[int, int]], count: int, length: int, room: int, seed: int
) -> list[list[int]]:
    """``count`` prompts of ``length`` tokens starting at seeded random places in ``ranges`` of ``tokens``, each
    followed by at least ``room`` more tokens of the same range (a passage, not the end of one)."""
    starts = [s for a, b in ranges for s in range(a, b - length - room + 1)]
    if len(starts) < count:
        raise UserError(f"a book part is too short for {count} prompts of {length} + {room} tokens; ask for fewer")
    generator = torch.Generator().manual_seed(seed)
    picked = torch.randperm(len(starts), generator=generator)[:count].sort().values
    return [tokens[starts[i] : starts[i] + length].tolist() for i in picked.tolist()]


def _books(args) -> list[dict]:
    books = [{"text_path": str(Path(p).expanduser().resolve())} for p in args.text_paths]
    books += [{"book_id": i} for i in args.book_ids]
    if len(books) < 2:
        raise UserError("the reward tells books apart: give at least two with --text_paths and/or --book_ids")
    return books


def _reward_and_tokens(args, books: list[dict]):
    from lit_gpt5.model.tokenizer import get_tokenizer
    from lit_gpt5.tuning.rewards import book_texts, reward_from_spec, reward_spec

    texts = book_texts(books, args.cache_dir)
    spec = reward_spec(books, texts, args.target, val_fraction=args.val_fraction)
    if args.target not in texts:
        raise UserError(f"--target {args.target!r} is not one of the books: {', '.join(texts)}")
    reward = reward_from_spec(spec, texts)
    tokenizer = get_tokenizer()
    return spec, reward, {name: torch.tensor(tokenizer.encode_ordinary(t)) for name, t in texts.items()}


def held_out_passages(tokens: dict[str, torch.Tensor], length: int, val_fraction: float) -> dict[str, torch.Tensor]:
    """Every non-overlapping passage of ``length`` + 1 tokens of each book's held-out part (the first the context)."""
    from lit_gpt5.data.segments import split_bounds

    out = {}
    for name, t in tokens.items():
        _, held_out = split_bounds(len(t), val_fraction, "tail", 100)
        part = torch.cat([t[a:b] for a, b in held_out])
        n = (len(part) // (length + 1)) * (length + 1)
        out[name] = part[:n].view(-1, length + 1)
    return out


def info(args) -> dict:
    """The reward's spec and how well it tells the books' held-out passages apart (``KnownReward.accuracy``)."""
    spec, reward, tokens = _reward_and_tokens(args, _books(args))
    result = reward.accuracy(held_out_passages(tokens, args.max_new_tokens, args.val_fraction))
    return {"spec": spec, "books": list(tokens), **result}


def _show_info(args) -> dict:
    result = info(args)
    books = result["books"]
    print(f"known reward: {args.target} against {', '.join(n for n in books if n != args.target)}, bigram models of "
          f"the training parts; held-out passages of {args.max_new_tokens} tokens: {result['passages']}")  # fmt: skip
    print(f"  book told apart (3-way):   {result['book_accuracy']:.1%}")
    print(f"  target vs others (r > 0):  {result['target_accuracy']:.1%}")
    for name in books:
        print(f"  mean reward of {name} passages: {result[f'reward/{name}']:+.3f} nats/token")
    return result


def _pairs(args) -> None:
    from lit_gpt5.data.records import write_jsonl
    from lit_gpt5.data.segments import split_bounds
    from lit_gpt5.files import check_output_dir, current_umask, write_bytes_atomic
    from lit_gpt5.model.tokenizer import get_tokenizer
    from lit_gpt5.tuning.rollouts import rollout_seed, sample_continuations
    from lit_gpt5.weights.checkpoints import load_model

    out = check_output_dir(args.out, "--out")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty; choose a new folder (the pairs are written whole or not at all)")
    if args.samples < 2:
        raise UserError(f"--samples must be at least 2 (a pair is the best and the worst of them), got {args.samples}")
    device = check_device(args.device)
    model = load_model(args.ckpt).to(device).eval()
    spec, reward, tokens = _reward_and_tokens(args, _books(args))
    tokenizer = get_tokenizer()
    per_book = {"train": args.train_prompts // len(tokens), "eval": args.eval_prompts // len(tokens)}
    prompts: dict[str, list[dict]] = {"train": [], "eval": []}
    for b, (name, t) in enumerate(tokens.items()):
        train, held_out = split_bounds(len(t), args.val_fraction, "tail", 100)
        for split, ranges in (("train", train), ("eval", held_out)):
            for ids in prompt_openings(t, ranges, per_book[split], args.prompt_tokens, args.max_new_tokens,
                                       rollout_seed(args.seed, b, split == "eval")):  # fmt: skip
                prompts[split].append({"prompt_ids": ids, "prompt": tokenizer.decode(ids), "book": name})
    records, margins = [], []
    batch = max(1, 256 // args.samples)
    for start in range(0, len(prompts["train"]), batch):
        chunk = prompts["train"][start : start + batch]
        rows = [p["prompt_ids"] for p in chunk]
        completions = sample_continuations(model, rows, args.samples, args.max_new_tokens,
                                           rollout_seed(args.seed, "pairs", start))  # fmt: skip
        rewards = reward(torch.tensor([r[-1] for r in rows for _ in range(args.samples)]), completions)
        for p, (r, c) in enumerate(zip(rewards.view(-1, args.samples), completions.view(len(rows), args.samples, -1),
                                       strict=True)):  # fmt: skip
            best, worst = int(r.argmax()), int(r.argmin())
            chosen, rejected = tokenizer.decode(c[best].tolist()), tokenizer.decode(c[worst].tolist())
            if best == worst or chosen == rejected:
                continue
            margins.append(float(r[best] - r[worst]))
            records.append({"prompt": chunk[p]["prompt"], "chosen": chosen, "rejected": rejected,
                            "chosen_reward": float(r[best]), "rejected_reward": float(r[worst]),
                            "book": chunk[p]["book"]})  # fmt: skip
    spec["pairs"] = {"ckpt": str(Path(args.ckpt).expanduser().resolve()), "samples": args.samples,
                     "prompt_tokens": args.prompt_tokens, "max_new_tokens": args.max_new_tokens, "seed": args.seed,
                     "pairs": len(records), "mean_margin": sum(margins) / max(1, len(margins))}  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; a folder the usual way is 0777 & ~umask
    try:
        write_jsonl(tmp / "pairs.jsonl", records)
        write_jsonl(tmp / "train_prompts.jsonl", prompts["train"])
        write_jsonl(tmp / "eval_prompts.jsonl", prompts["eval"])
        write_bytes_atomic(tmp / "reward.json", (json.dumps(spec, indent=1) + "\n").encode())
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"{len(records)} pairs (mean reward margin {spec['pairs']['mean_margin']:.3f} nats/token), "
          f"{len(prompts['train'])} training and {len(prompts['eval'])} held-out prompts: {out}")  # fmt: skip


def _evaluate(args) -> dict:
    from lit_gpt5.data.records import read_json_records
    from lit_gpt5.data.rollout_prompts import normalize_prompt
    from lit_gpt5.files import write_bytes_atomic
    from lit_gpt5.model.tokenizer import get_tokenizer
    from lit_gpt5.tuning.rewards import load_reward
    from lit_gpt5.tuning.rollouts import evaluate_policy, rollout_seed, sample_continuations
    from lit_gpt5.weights.checkpoints import frozen_model

    device = check_device(args.device)
    reward = load_reward(args.reward)
    records = read_json_records(args.prompts, normalize_prompt, "prompt", "--prompts")
    if any("prompt_ids" not in r for r in records):
        raise UserError(f"{args.prompts}: eval prompts need 'prompt_ids' (the eval_prompts.jsonl of reward pairs)")
    prompts = [r["prompt_ids"] for r in records]
    policy = frozen_model(args.ckpt).to(device)
    reference = frozen_model(args.reference).to(device) if args.reference else policy
    result = evaluate_policy(policy, reference, reward, prompts, args.samples, args.max_new_tokens, args.seed)
    tokenizer = get_tokenizer()
    shown = prompts[:: max(1, len(prompts) // max(1, args.show))][: args.show]
    completions = sample_continuations(policy, shown, 1, args.max_new_tokens, rollout_seed(args.seed, "show"))
    result["shown"] = [] if not shown else [{"prompt": tokenizer.decode(p),
                                              "continuation": tokenizer.decode(c.tolist()),
                                              "reward": float(reward(torch.tensor([p[-1]]), c[None]))}
                       for p, c in zip(shown, completions, strict=True)]  # fmt: skip
    result["ckpt"], result["reference"] = str(args.ckpt), str(args.reference or args.ckpt)
    print(f"{args.ckpt}: reward {result['reward']:+.4f} ± {1.96 * result['reward_sem']:.4f} nats/token, "
          f"KL {result['kl']:.4f} ± {1.96 * result['kl_sem']:.4f} nats/token ({result['samples']} samples; "
          "± 1.96 standard errors over prompts)")  # fmt: skip
    if args.json_out:
        write_bytes_atomic(args.json_out, (json.dumps(result) + "\n").encode())
    return result


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser(prog="lit-gpt5 reward", description="The known-reward preference-tuning experiment.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    for name, what in (("info", "how well the reward tells the books apart"), ("pairs", "build pairs and prompts")):
        p = sub.add_parser(name, help=what)
        p.add_argument("--text_paths", nargs="*", default=[], help="the books, as text files (UTF-8)")
        p.add_argument("--book_ids", type=int, nargs="*", default=[], help="the books, as Project Gutenberg ids")
        p.add_argument("--target", required=True, help="the book whose style is rewarded (a file stem or an id)")
        p.add_argument("--val_fraction", type=float, default=0.1, help="each book's held-out tail (as pretraining)")
        p.add_argument("--max_new_tokens", type=int, default=32, help="continuation (and held-out passage) length")
        p.add_argument("--cache_dir", default=None, help="where Gutenberg downloads are cached")
    p = sub.choices["pairs"]
    p.add_argument("--ckpt", required=True, help="the reference model that samples (a .ckpt or HF directory)")
    p.add_argument("--out", required=True, help="a new folder for reward.json, pairs.jsonl and the prompt files")
    p.add_argument("--train_prompts", type=int, default=1200, help="prompts for pairs and RLOO, over all books")
    p.add_argument("--eval_prompts", type=int, default=96, help="held-out prompts, over all books")
    p.add_argument("--samples", type=int, default=4, help="continuations sampled per prompt")
    p.add_argument("--prompt_tokens", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p = sub.add_parser("eval", help="a policy's mean reward and KL to the reference on held-out prompts")
    p.add_argument("--ckpt", required=True, help="the policy (a .ckpt or HF directory)")
    p.add_argument("--reference", default=None, help="the reference (default: the policy itself, KL 0)")
    p.add_argument("--reward", required=True, help="the reward.json of reward pairs")
    p.add_argument("--prompts", required=True, help="the eval_prompts.jsonl of reward pairs")
    p.add_argument("--samples", type=int, default=4, help="continuations per prompt")
    p.add_argument("--max_new_tokens", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="the same seed gives every policy the same random numbers")
    p.add_argument("--show", type=int, default=6, help="continuations kept as text in --json_out")
    p.add_argument("--json_out", default=None)
    p.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    for name in ("max_new_tokens", "train_prompts", "eval_prompts", "samples", "prompt_tokens"):
        if getattr(args, name, 1) < 1:
            raise UserError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if not 0 < getattr(args, "val_fraction", 0.1) < 1:
        raise UserError(f"--val_fraction must be in (0, 1), got {args.val_fraction}")
    {"info": _show_info, "pairs": _pairs, "eval": _evaluate}[args.command](args)


if __name__ == "__main__":
    from lit_gpt5.errors import run_main

    run_main(main)
