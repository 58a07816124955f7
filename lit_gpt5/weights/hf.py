"""GPT-2 weights in and out of Hugging Face checkpoint directories, exactly.

HF's GPT-2 stores its four projection matrices as ``Conv1D`` weights, i.e. transposed relative to ``nn.Linear``; that
and the ``transformer.`` prefix are the only differences from our parameter names, so the conversion is exact. The
command is ``lit-gpt5 convert`` (``lit_gpt5.commands.convert``).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import torch

from lit_gpt5.errors import UserError
from lit_gpt5.files import atomic_path
from lit_gpt5.model.gpt import GPT, GPTConfig

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Buffers some HF versions saved with the weights: the causal mask, not parameters.
HF_BUFFERS = (".attn.bias", ".attn.masked_bias")
SUPPORTED_ACTIVATIONS = (None, "gelu_new", "gelu_pytorch_tanh")


def config_from_hf(cfg: dict, source: str = "config.json") -> GPTConfig:
    if not isinstance(cfg, dict):
        kind = type(cfg).__name__
        raise UserError(f"{source} holds a JSON {kind}, not an object of settings: not a GPT-2 config.json")
    if cfg.get("model_type", "gpt2") != "gpt2":
        raise UserError(f"{source} describes a {cfg.get('model_type')!r} model; only GPT-2 checkpoints can be loaded")
    if cfg.get("activation_function") not in SUPPORTED_ACTIVATIONS:
        raise UserError(f"{source}: activation {cfg['activation_function']!r} is not GPT-2's gelu_new")
    if cfg.get("n_inner") not in (None, 4 * cfg.get("n_embd", 0)):
        raise UserError(f"{source}: n_inner={cfg['n_inner']} is not 4 * n_embd, which this GPT-2 assumes")
    if cfg.get("scale_attn_by_inverse_layer_idx") or cfg.get("reorder_and_upcast_attn"):
        raise UserError(f"{source}: attention variants (scale_attn_by_inverse_layer_idx, ...) are not supported")
    if cfg.get("scale_attn_weights") is False:
        raise UserError(f"{source}: scale_attn_weights=false is not supported")
    for key in ("n_positions", "vocab_size", "n_layer", "n_head", "n_embd"):
        value = cfg.get(key)
        if key in cfg and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise UserError(f"{source}: {key} must be a positive integer, got {value!r}")
    if isinstance(cfg.get("n_embd"), int) and isinstance(cfg.get("n_head"), int) and cfg["n_embd"] % cfg["n_head"]:
        raise UserError(f"{source}: n_embd {cfg['n_embd']} is not divisible by n_head {cfg['n_head']}")
    try:
        return GPTConfig(
            block_size=cfg["n_positions"],
            vocab_size=cfg["vocab_size"],
            n_layer=cfg["n_layer"],
            n_head=cfg["n_head"],
            n_embd=cfg["n_embd"],
            dropout=cfg.get("resid_pdrop", 0.1),
            bias=True,
            layer_norm_epsilon=cfg.get("layer_norm_epsilon", 1e-5),
        )
    except KeyError as err:
        raise UserError(f"{source} has no {err.args[0]!r}: not a GPT-2 config.json") from None


def config_to_hf(config: GPTConfig) -> dict:
    if not config.bias:
        raise UserError("Hugging Face's GPT-2 always has biases; a model trained with bias=False cannot be exported")
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "torch_dtype": "float32",
    }


def _read_hf_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    index = path / "model.safetensors.index.json"
    try:
        if (path / "model.safetensors").exists():
            return load_file(path / "model.safetensors")
        if index.exists():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            weights: dict[str, torch.Tensor] = {}
            for shard in shards:
                weights.update(load_file(path / shard))
            return weights
    except (SafetensorError, OSError, ValueError, KeyError) as err:
        raise UserError(f"cannot read the weights in {path}: {err}; the download may be incomplete") from None
    if (path / "pytorch_model.bin").exists():
        try:
            # weights_only: a .bin is a pickle, and unpickling can run arbitrary code.
            return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing to the user
            raise UserError(f"{path / 'pytorch_model.bin'} is not a plain tensor checkpoint: {err}") from None
    raise UserError(f"{path} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def load_hf(path: str | os.PathLike, dtype: torch.dtype = torch.float32, dropout: float | None = None) -> GPT:
    """A ``GPT`` with the weights of a local Hugging Face GPT-2 checkpoint directory. Never downloads.

    ``dropout`` replaces the checkpoint's (HF GPT-2 configs say 0.1) for fine-tuning; it does not change inference.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(f"{path} is not a directory; pass a Hugging Face GPT-2 checkpoint directory")
    if not (path / "config.json").exists():
        raise UserError(f"{path} has no config.json: not a Hugging Face checkpoint directory")
    try:
        hf_config = json.loads((path / "config.json").read_text())
    except ValueError as err:
        raise UserError(f"{path / 'config.json'} is not valid JSON: {err}") from None
    config = config_from_hf(hf_config, str(path / "config.json"))
    if dropout is not None:
        config = replace(config, dropout=dropout)
    weights = _read_hf_weights(path)

    with torch.device("meta"):
        model = GPT(config)
    expected = {k: v.shape for k, v in model.state_dict().items() if k != GPT.tied_key}
    state: dict[str, torch.Tensor] = {}
    head = None
    for key, tensor in weights.items():
        if key.endswith(HF_BUFFERS):
            continue
        if key == GPT.tied_key:
            head = tensor
            continue
        name = key if key.startswith("transformer.") else f"transformer.{key}"
        if name not in expected:
            raise UserError(f"{path}: unexpected tensor {key!r}; not a GPT-2 checkpoint")
        # Shapes as stored in the file (Conv1D: (in, out)), so the message matches what the user can inspect.
        want = tuple(expected[name])[::-1] if name.endswith(CONV1D) else tuple(expected[name])
        if tuple(tensor.shape) != want:
            raise UserError(f"{path}: tensor {key!r} has shape {tuple(tensor.shape)}, but config.json implies {want}")
        if name.endswith(CONV1D):
            tensor = tensor.t()
        state[name] = tensor.to(dtype).contiguous()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise UserError(f"{path}: the weights miss {len(missing)} tensors, e.g. {missing[0]!r}")
    if head is not None and not torch.equal(head.to(dtype), state["transformer.wte.weight"]):
        raise UserError(f"{path}: {GPT.tied_key} differs from wte.weight; GPT-2's output head is tied to it")
    state[GPT.tied_key] = state["transformer.wte.weight"]
    model.load_state_dict(state, assign=True)
    model.tie_weights()
    return model


def save_hf(model: GPT, out_dir: str | os.PathLike, tokenizer: bool = True) -> None:
    """Write ``config.json`` + ``model.safetensors`` (+ GPT-2 tokenizer files) that ``transformers`` loads as is."""
    from safetensors.torch import save_file

    from lit_gpt5.model.tokenizer import save_hf_tokenizer

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    config = config_to_hf(model.config)
    tensors = {}
    for name, tensor in model.state_dict().items():
        if name == GPT.tied_key:
            continue  # tied: HF re-creates it from wte
        tensor = tensor.detach().to("cpu")
        tensors[name] = (tensor.t() if name.endswith(CONV1D) else tensor).contiguous()
    config["torch_dtype"] = str(tensors["transformer.wte.weight"].dtype).removeprefix("torch.")
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    with atomic_path(out / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")
    if tokenizer:
        save_hf_tokenizer(out, model_max_length=model.config.block_size)
