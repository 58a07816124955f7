"""Our own checkpoints: reading one safely, reading the model out of it, writing a weights-only one.

A Lightning ``.ckpt`` of this project records the architecture itself (``checkpoint["lit_gpt5"]["model_config"]``,
written by ``lit_gpt5.resume.state.RunState``), so its weights are usable without the arguments that built them.
Whether a file can *resume* a run is ``lit_gpt5.resume.arguments.check_checkpoint``'s question. Everything is loaded
with ``torch.load(weights_only=True)``: tensors and plain containers, never code.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import torch

from lit_gpt5.errors import UserError
from lit_gpt5.files import atomic_path
from lit_gpt5.model.gpt import GPT, GPTConfig


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The dict inside a Lightning checkpoint, loaded safely; a one-line error for anything else."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        # weights_only: a Lightning .ckpt is a pickle; this refuses anything but tensors and plain containers.
        # mmap: tensors are read when touched, so the optimizer state of a big run's .ckpt never fills the RAM.
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - corrupt zip, foreign pickle, ...: all mean "not a checkpoint of ours"
        raise UserError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}); pass a .ckpt") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UserError(f"{path} is not a Lightning checkpoint (no state_dict)")
    return ckpt


def checkpoint_config(ckpt: dict) -> GPTConfig:
    saved = ckpt.get("lit_gpt5", {}).get("model_config")
    if saved is not None:
        return GPTConfig(**saved)
    hp = ckpt.get("hyper_parameters", {})
    return GPTConfig.from_name(
        hp.get("model_name", "model5"),
        block_size=hp.get("n_positions"),
        n_layer=hp.get("n_layer"),
        n_head=hp.get("n_head"),
        n_embd=hp.get("n_embd"),
        dropout=hp.get("dropout"),
        bias=hp.get("bias"),
    )


def load_checkpoint(
    path: str | os.PathLike, dtype: torch.dtype = torch.float32, dropout: float | None = None, merge: bool = True
) -> GPT:
    """The ``GPT`` inside one of our Lightning checkpoints (weights only: no optimizer, no step). A checkpoint of a
    LoRA run gives the base model with its adapters merged in (``merge=False``: with the adapters, as trained)."""
    from lit_gpt5.model.lora import apply_lora, merge_lora

    path = Path(path).expanduser()
    ckpt = read_checkpoint(path)
    config = checkpoint_config(ckpt)
    if dropout is not None:
        config = replace(config, dropout=dropout)
    state = {k.removeprefix("model."): v.to(dtype) for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    lora = (ckpt.get("lit_gpt5") or {}).get("lora")
    with torch.device("meta"):
        model = GPT(config)
        if lora:
            apply_lora(model, lora["r"], lora["alpha"], targets=tuple(lora["targets"]))
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise UserError(f"{path} does not hold a GPT matching its own config: {first}") from None
    model.tie_weights()
    if lora and merge:
        # The merged model is a plain GPT: every weight trainable again, as in a fresh one (apply_lora froze the base
        # weights, and merging would otherwise hand a run that starts from it, DPO after LoRA SFT, nothing to train).
        return merge_lora(model).requires_grad_(True)
    return model


def tuning_template(path: str | os.PathLike) -> str | None:
    """The prompt template a checkpoint was instruction-tuned with (its data module's ``template``), if any."""
    path = Path(path).expanduser()
    if path.is_dir():
        meta = path / "lit_gpt5.json"
        return json.loads(meta.read_text()).get("template") if meta.exists() else None
    data = read_checkpoint(path).get("datamodule_hyper_parameters") or {}
    return data.get("template")


def load_model(path: str | os.PathLike, dtype: torch.dtype = torch.float32, dropout: float | None = None) -> GPT:
    """A GPT from a Hugging Face directory or one of our ``.ckpt`` files."""
    from lit_gpt5.weights.hf import load_hf

    path = Path(path).expanduser()
    return load_hf(path, dtype, dropout) if path.is_dir() else load_checkpoint(path, dtype, dropout)


def frozen_model(path: str | os.PathLike) -> GPT:
    """A model to compare with and never train (preference tuning's reference pi_ref): eval mode, no gradients."""
    model = load_model(path).eval()
    model.requires_grad_(False)
    return model


def save_checkpoint(model: GPT, path: str | os.PathLike) -> None:
    """A Lightning checkpoint of ``model`` that ``--model.init_from`` and ``GPTLitModule.load_from_checkpoint`` take."""
    import lightning

    config = asdict(model.config)
    state = {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    ckpt = {
        "state_dict": state,
        "pytorch-lightning_version": lightning.__version__,
        "hyper_parameters": {
            "model_name": "gpt2",
            "n_positions": config["block_size"],
            "n_layer": config["n_layer"],
            "n_head": config["n_head"],
            "n_embd": config["n_embd"],
            "dropout": config["dropout"],
            "bias": config["bias"],
        },
        "lit_gpt5": {"model_config": config},
    }
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
