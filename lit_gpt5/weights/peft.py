"""LoRA adapters out as the directory PEFT loads onto ``transformers``' GPT-2 (``PeftModel.from_pretrained``)."""

from __future__ import annotations

import json
from pathlib import Path

import torch.nn as nn

from lit_gpt5.errors import UserError
from lit_gpt5.files import atomic_path, write_bytes_atomic
from lit_gpt5.model.lora import EMBEDDING, LoRAEmbedding, LoRALinear, TiedLoRAHead, lora_layers, lora_settings


def save_peft_adapter(model: nn.Module, out_dir, base_model_name_or_path: str | None = None) -> None:
    """Write the adapters as the directory PEFT loads onto ``transformers``' GPT-2 (``PeftModel.from_pretrained``):
    ``adapter_config.json`` and ``adapter_model.safetensors``. GPT-2's layers are Conv1D there (weights stored
    in x out), hence ``fan_in_fan_out``; the adapter matrices themselves are the same."""
    from safetensors.torch import save_file

    settings = lora_settings(model)
    if settings is None:
        raise UserError("the model has no LoRA adapters to export; train with --model.lora_r N")
    layers = list(lora_layers(model))
    tensors = {}
    for name, layer in layers:
        # PEFT's names: lora_A.weight / lora_B.weight for a linear layer, lora_embedding_A / _B for an embedding (the
        # same matrices and shapes as ours in both cases).
        suffixes = (
            ("lora_embedding_A", "lora_embedding_B")
            if isinstance(layer, LoRAEmbedding)
            else ("lora_A.weight", "lora_B.weight")
        )
        tensors[f"base_model.model.{name}.{suffixes[0]}"] = layer.lora_A.detach().float().cpu().contiguous()
        tensors[f"base_model.model.{name}.{suffixes[1]}"] = layer.lora_B.detach().float().cpu().contiguous()
    for name, head in model.named_modules():
        if isinstance(head, TiedLoRAHead):  # PEFT saves the tied head's adapter too: the embedding's, transposed
            emb = head.embedding
            tensors[f"base_model.model.{name}.lora_A.weight"] = emb.lora_B.detach().float().cpu().t().contiguous()
            tensors[f"base_model.model.{name}.lora_B.weight"] = emb.lora_A.detach().float().cpu().t().contiguous()
    dropout = next((m.lora_dropout for _, m in layers if isinstance(m, LoRALinear)), None)
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path,
        "r": settings["r"],
        "lora_alpha": settings["alpha"],
        "lora_dropout": dropout.p if isinstance(dropout, nn.Dropout) else 0.0,
        # PEFT ties an adapter to GPT-2's embedding when asked for the head it is tied to (lm_head) with
        # ensure_weight_tying: it then adapts transformer.wte and gives lm_head the same adapter, as ours is.
        "target_modules": [("lm_head" if t == EMBEDDING else t) for t in settings["targets"]],
        "fan_in_fan_out": True,
        "bias": "none",
        "inference_mode": True,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
        "ensure_weight_tying": EMBEDDING in settings["targets"],
    }
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "adapter_model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_bytes_atomic(out / "adapter_config.json", (json.dumps(config, indent=2) + "\n").encode())
