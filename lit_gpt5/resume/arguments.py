"""Resuming a run with ``--ckpt_path``: which arguments come from the checkpoint, which from the command line, which
may not change, and how a change is applied and reported.

Precedence: the defaults, then the checkpoint's own arguments, then what a ``--config`` or the command line gives.
So ``fit --ckpt_path last.ckpt`` alone continues the run as it was, and ``--model.learning_rate 1e-5`` with it
continues the run with a lower learning rate (applied to the restored optimizer and schedule by
``apply_policy_changes``; the run prints what changed). Arguments that would make the checkpoint's weights
meaningless (the architecture, or other starting weights via ``init_from``) are refused, naming the conflict, and so
are data arguments that would continue a different run under the same name (``DATA_IDENTITY``). ``resume_arguments``
is all of it, for the CLI (``lit_gpt5.cli.GPT5CLI.parse_arguments``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from jsonargparse import Namespace

from lit_gpt5.compat import set_scheduler_last_lr
from lit_gpt5.errors import UserError
from lit_gpt5.log import get_logger
from lit_gpt5.old_paths import current_path, resolve
from lit_gpt5.weights.checkpoints import checkpoint_config, read_checkpoint

log = get_logger(__name__)

ARCHITECTURE = ("model_name", "n_positions", "n_layer", "n_head", "n_embd", "bias", "lora_r", "lora_targets")
# Training-policy arguments a resumed run applies to the restored optimizer and schedule.
POLICY = ("learning_rate", "min_lr", "warmup_steps", "lr_decay_steps", "weight_decay", "beta1", "beta2")
SPECIAL_PATHS = ("last", "best", "hpc", "registry")


def resume_arguments(parser, args, config: Namespace, subcommand: str | None) -> Namespace:
    """The CLI's parsed ``config`` once ``--ckpt_path`` is taken into account: the checkpoint's model arguments under
    what the command line and configs give, the refusals and reports of ``settle_resumed_model`` and
    ``settle_resumed_data``, and a run that would have nothing left to train refused. A bad ``--ckpt_path`` is found
    here, before Lightning creates the run's log directory, as one line."""
    ckpt_path = local_checkpoint(config[subcommand].get("ckpt_path")) if subcommand else None
    if ckpt_path is None or isinstance(args, dict | Namespace):
        return config
    ckpt = check_checkpoint(ckpt_path, resuming=subcommand == "fit")
    # Parse again on top of the checkpoint's model arguments: those given in a config or on the command line win.
    config = parser.parse_args(args, namespace=checkpoint_defaults(ckpt, subcommand, config[subcommand].model))
    run = config[subcommand]
    run.model = settle_resumed_model(run.model, ckpt, ckpt_path)
    if subcommand == "fit":
        settle_resumed_data(run.data, run.trainer, ckpt, ckpt_path)
        max_steps, done = run.trainer.get("max_steps"), ckpt.get("global_step", 0)
        if max_steps is not None and 0 <= max_steps <= done:
            raise UserError(
                f"--ckpt_path {ckpt_path} is at step {done} and --trainer.max_steps is {max_steps}: nothing is "
                "left to train; raise --trainer.max_steps to continue the run, or evaluate it with validate or test"
            )
    return config


def check_checkpoint(path: str | os.PathLike, resuming: bool) -> dict:
    """The checkpoint at ``path``; a clear message, before a run starts, if it cannot be resumed (``resuming``) or
    evaluated."""
    ckpt = read_checkpoint(Path(path).expanduser())
    if not resuming:
        return ckpt
    if "optimizer_states" not in ckpt:
        raise UserError(
            f"{path} holds weights only (no optimizer state or step), so a run cannot resume from it; "
            f"start from its weights with --model.init_from {path}"
        )
    missing = [key for key in ("lr_schedulers", "loops", "global_step") if key not in ckpt]
    if missing:
        raise UserError(
            f"{path} is not a complete training checkpoint (no {', '.join(missing)}), so a run cannot resume from "
            f"it; start from its weights with --model.init_from {path}"
        )
    return ckpt


def same_class(a: str | None, b: str | None) -> bool:
    """Whether two class paths name the same class (``lit_gpt5.data.GutenbergDataModule`` and
    ``lit_gpt5.data.book_module.GutenbergDataModule`` do; so does a path of 0.1 and its new one)."""
    if a == b:
        return True
    if not a or not b:
        return False
    try:
        return resolve(a) is resolve(b)
    except (ImportError, AttributeError):
        return False


def local_checkpoint(ckpt_path: str | os.PathLike | None) -> str | None:
    """``ckpt_path`` if it names a local file to read (not ``last``/``best``/a URL), else None."""
    if not ckpt_path or str(ckpt_path) in SPECIAL_PATHS or "://" in str(ckpt_path):
        return None
    return str(ckpt_path)


def model_hparams(ckpt: dict) -> dict:
    """The model arguments the checkpoint's run was built with (Lightning's bookkeeping keys left out)."""
    return {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if not k.startswith("_")}


def checkpoint_defaults(ckpt: dict, subcommand: str, model: Namespace) -> Namespace:
    """A namespace of the checkpoint's model arguments, to parse the command line on top of (only the arguments
    the configured model class takes)."""
    base = Namespace()
    hparams = model_hparams(ckpt)
    class_path = current_path((ckpt.get("hyper_parameters") or {}).get("_class_path") or model.get("class_path"))
    ours = same_class(class_path, model.get("class_path"))
    base[f"{subcommand}.model.class_path"] = model.get("class_path") if ours else class_path
    known = set(vars(model.init_args)) if ours else set(hparams)
    for key, value in hparams.items():
        if key in known:
            base[f"{subcommand}.model.init_args.{key}"] = value
    return base


def settle_resumed_model(model: Namespace, ckpt: dict, ckpt_path: str, report: bool = True) -> Namespace:
    """Refuse arguments that cannot change on resume, report the ones that did, and stop ``init_from`` from being
    loaded again (the weights come from the checkpoint; the architecture from the one it records)."""
    args, theirs = model.init_args, model_hparams(ckpt)
    init_from = theirs.get("init_from")
    if args.get("init_from") != init_from:
        origin = f", started from {init_from}" if init_from else ""
        raise UserError(
            f"--model.init_from {args.get('init_from')} and --ckpt_path {ckpt_path} both set the weights: "
            f"--ckpt_path resumes that run (its weights, optimizer and step{origin}); drop --model.init_from to "
            f"resume, or drop --ckpt_path to start a new run from {args.get('init_from')}"
        )
    config = checkpoint_config(ckpt)
    for key in ARCHITECTURE:
        if key in theirs and args.get(key) != theirs[key]:
            size = f"n_layer={config.n_layer}, n_head={config.n_head}, n_embd={config.n_embd}"
            raise UserError(
                f"--model.{key} {args.get(key)} conflicts with --ckpt_path {ckpt_path}, whose model was built with "
                f"{key}={theirs[key]} ({size}); the architecture cannot change when resuming: drop --model.{key}"
            )
    changed = [f"{k} {theirs[k]} -> {args[k]}" for k in _keys(args) if k in theirs and args[k] != theirs[k]]
    if changed and report and _rank_zero():
        log.info(f"lit_gpt5: resuming {Path(ckpt_path).name} with changed settings: {', '.join(changed)}")
    if init_from:
        # The checkpoint records the architecture it holds; init_from's file may be gone, and is not needed, except
        # by DPO, whose frozen reference is the model it started from.
        if "reference" in args and not args.get("reference"):
            args.reference = init_from
        args.init_from = None
        args.model_name = "gpt2"
        args.n_positions, args.n_layer, args.n_head = config.block_size, config.n_layer, config.n_head
        args.n_embd, args.bias = config.n_embd, config.bias
        if args.get("dropout") is None:
            args.dropout = config.dropout
    return model


# Data arguments that define what is trained on and held out: changing one on resume would continue a different run
# under the same name (other text, another held-out set, another window stream), so it is refused.
DATA_IDENTITY = (
    "book_id", "url", "text_path", "book_ids", "text_paths", "train_path", "val_path", "val_fraction", "split",
    "interleave_blocks", "seed", "store", "train_fraction",
)  # fmt: skip
# Data arguments a resumed run may change: the batch stream continues after the micro-batches already trained.
DATA_POLICY = (
    "batch_size", "block_size", "sampling", "random_offset", "max_length", "template", "mask_prompt",
    "bucket_by_length", "val_batch_size", "eval_text_paths", "eval_book_ids", "eval_only",
)  # fmt: skip


def settle_resumed_data(data: Namespace, trainer: Namespace, ckpt: dict, ckpt_path: str, report: bool = True) -> None:
    """Refuse data changes a resume cannot continue (``DATA_IDENTITY``, another data class), and report the ones it
    continues with (``DATA_POLICY``, and ``--trainer.accumulate_grad_batches``): the batch stream goes on after the
    micro-batches the checkpoint's run trained, whatever the new batch size or accumulation."""
    theirs = {k: v for k, v in (ckpt.get("datamodule_hyper_parameters") or {}).items() if k != "_instantiator"}
    ours = dict(vars(data.get("init_args") or Namespace()))
    their_class, our_class = theirs.pop("_class_path", None), data.get("class_path")
    if their_class and our_class and not same_class(their_class, our_class):
        raise UserError(
            f"--ckpt_path {ckpt_path} was trained on {their_class.rsplit('.', 1)[-1]} data, this run gives "
            f"{our_class.rsplit('.', 1)[-1]}; resume with the same --data, or start a new run from its weights with "
            f"--model.init_from {ckpt_path}"
        )
    if "book_id" in theirs and "book_id" in ours:  # None (the default) means book 829 whenever it is used
        theirs["book_id"], ours["book_id"] = theirs["book_id"] or 829, ours["book_id"] or 829
    for key in DATA_IDENTITY:
        if key in theirs and key in ours and theirs[key] != ours[key]:
            raise UserError(
                f"--data.{key} {ours[key]} differs from the {theirs[key]} of --ckpt_path {ckpt_path}: a resumed run "
                f"trains on the same data and holds out the same text; drop --data.{key}, or start a new run from "
                f"its weights with --model.init_from {ckpt_path}"
            )
    # What the arguments cannot tell (a store that gained a book under the same path), the data module checks.
    check = getattr(_class_of(our_class), "check_resume", None)
    if callable(check) and their_class:
        check(ours, ckpt.get(their_class.rsplit(".", 1)[-1]) or {})
    changed = [
        f"{k} {theirs[k]} -> {ours[k]}" for k in DATA_POLICY if k in theirs and k in ours and theirs[k] != ours[k]
    ]
    state = ckpt.get("lit_gpt5") or {}
    accumulate = trainer.get("accumulate_grad_batches")
    if "accumulate_grad_batches" in state and accumulate not in (None, state["accumulate_grad_batches"]):
        changed.append(f"accumulate_grad_batches {state['accumulate_grad_batches']} -> {accumulate}")
    if changed and report and _rank_zero():
        done = state.get("global_batches")
        where = f" after the {done} batches already trained" if done is not None else ""
        log.info(
            f"lit_gpt5: resuming {Path(ckpt_path).name} with changed data settings: {', '.join(changed)}; the batch "
            f"stream continues{where}"
        )


def _class_of(path: str | None) -> type | None:
    try:
        return resolve(path) if path else None
    except (ImportError, AttributeError):
        return None


def _rank_zero() -> bool:
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def _keys(args: Namespace) -> Iterable[str]:
    return [k for k in vars(args) if not k.startswith("_")]


def apply_policy_changes(checkpoint: dict, hparams: dict, lr_at_step) -> list[str]:
    """Make a resumed run's own learning rate, schedule, weight decay and betas take effect on the optimizer and
    scheduler states about to be restored from ``checkpoint``; returns what changed.

    ``lr_at_step(step)`` is the new schedule's learning rate at an optimizer step.
    """
    theirs = model_hparams(checkpoint)
    changed = [k for k in POLICY if k in theirs and theirs[k] != hparams.get(k)]
    if not changed or not checkpoint.get("optimizer_states"):
        return []
    step = checkpoint.get("global_step", 0)
    for state in checkpoint.get("optimizer_states", []):
        for i, group in enumerate(state.get("param_groups", [])):
            group["lr"] = lr_at_step(step)
            group["initial_lr"] = hparams["learning_rate"]
            group["betas"] = (hparams["beta1"], hparams["beta2"])
            if i == 0:  # the group with decay: matrices and embeddings
                group["weight_decay"] = hparams["weight_decay"]
    for state in checkpoint.get("lr_schedulers", []):
        n = len(state.get("base_lrs", []))
        state["base_lrs"] = [hparams["learning_rate"]] * n
        set_scheduler_last_lr(state, [lr_at_step(step)] * n)
    return changed
