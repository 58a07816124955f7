"""LoRA for GPT-2: low-rank adapters on the blocks' linear layers, the base weights frozen (Hu et al. 2021).

A targeted ``nn.Linear`` computing ``x W^T + b`` becomes ``x W^T + b + (alpha / r) * dropout(x) A^T B^T`` with ``A``
(r x in) and ``B`` (out x r) trainable and ``W``, ``b`` frozen; ``B`` starts at zero, so the adapted model starts as
the base model exactly. Only the adapters train, so the optimizer holds 2 x (r x (in + out)) values per layer
instead of the whole model's, and the frozen weights need no gradient and no AdamW moments.

Written here rather than taken from PEFT: PEFT would bring ``transformers`` and ``accelerate`` into the core install
and wrap the modules under new names; ``LoRALinear`` keeps every base parameter's name (checkpoints, Hugging Face
conversion, FSDP's Block units and the chunked loss are unchanged) and is ~100 lines.
``lit_gpt5.weights.peft.save_peft_adapter`` writes the directory PEFT loads onto ``transformers``' GPT-2.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from lit_gpt5.errors import UserError

TARGETS = ("c_attn", "c_proj", "c_fc")  # attention q|k|v and output, MLP in and out (c_proj names both projections)
# The token embedding, which GPT-2's output head shares: one adapter on the shared matrix, seen by both (an option:
# in a small model most weights are there, and what instruction tuning changes most is which tokens come out).
EMBEDDING = "wte"
ALL_TARGETS = (*TARGETS, EMBEDDING)


def _adapter_factory(weight: torch.Tensor) -> dict:
    """Where and in what dtype a layer's adapters live: on its weight's device, in float32 (or float64) whatever
    dtype the frozen weight is held in."""
    dtype = weight.dtype if weight.dtype in (torch.float32, torch.float64) else torch.float32
    return {"device": weight.device, "dtype": dtype}


def _children(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, name, child) for every submodule of ``model``, listed first so that children can be replaced."""
    return [(module, name, child) for module in model.modules() for name, child in module.named_children()]


class LoRALinear(nn.Linear):
    """An ``nn.Linear`` with a low-rank adapter: same ``weight`` and ``bias`` (frozen), plus ``lora_A``, ``lora_B``."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0) -> None:
        nn.Module.__init__(self)  # not nn.Linear's: the base's own weight and bias are taken over, not re-created
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        factory = _adapter_factory(base.weight)
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # PEFT's and the paper's initialisation
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.adapter_enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if weight.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type):
            # Frozen weights held in 16 bits (hold_frozen_in) and called outside autocast (text samples, generation):
            # compute in the input's dtype, as the rest of the model does.
            weight, bias = weight.to(x.dtype), None if bias is None else bias.to(x.dtype)
        out = F.linear(x, weight, bias)
        if not self.adapter_enabled:
            return out
        return out + F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B) * self.scaling

    def delta(self) -> torch.Tensor:
        """The adapter's change to ``weight``: (alpha / r) B A, shaped like it."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, alpha={self.alpha}"


class LoRAEmbedding(nn.Embedding):
    """An ``nn.Embedding`` with a low-rank adapter on its matrix: ``W + (alpha / r) A^T B^T`` (vocabulary x n_embd),
    ``lora_A`` (r x vocabulary) starting at zero and ``lora_B`` (n_embd x r) random, as PEFT's embedding LoRA. The
    output head tied to this matrix sees the same change (``TiedLoRAHead``). No dropout: an embedding's input is a
    token id (PEFT's embedding LoRA has none either)."""

    def __init__(self, base: nn.Embedding, r: int, alpha: float) -> None:
        nn.Module.__init__(self)
        self.num_embeddings, self.embedding_dim = base.num_embeddings, base.embedding_dim
        self.padding_idx, self.max_norm, self.norm_type = base.padding_idx, base.max_norm, base.norm_type
        self.scale_grad_by_freq, self.sparse = base.scale_grad_by_freq, base.sparse
        self.weight = base.weight
        self.weight.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        factory = _adapter_factory(base.weight)
        self.lora_A = nn.Parameter(torch.zeros(r, self.num_embeddings, **factory))
        self.lora_B = nn.Parameter(torch.empty(self.embedding_dim, r, **factory))
        nn.init.normal_(self.lora_B)  # PEFT's initialisation of an embedding adapter
        self.adapter_enabled = True

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        out = F.embedding(idx, self.weight, self.padding_idx)
        if not self.adapter_enabled:
            return out
        return out + (F.embedding(idx, self.lora_A.t()) @ self.lora_B.t()) * self.scaling

    def delta(self) -> torch.Tensor:
        """The adapter's change to ``weight``: (alpha / r) A^T B^T, shaped like it."""
        return (self.lora_A.t() @ self.lora_B.t()) * self.scaling

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, alpha={self.alpha}"


class TiedLoRAHead(nn.Linear):
    """The output head of a model whose token embedding carries a ``LoRAEmbedding``: its weight is the embedding's
    (tied, frozen) and its adapter the embedding's too, so logits are ``h (W + delta)^T`` exactly as the merged model
    computes them. It owns no parameter of its own: the adapter is saved, trained and switched off with the
    embedding."""

    def __init__(self, base: nn.Linear, embedding: LoRAEmbedding) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, None
        object.__setattr__(self, "embedding", embedding)  # a reference, not a submodule: no second state-dict entry

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight)
        emb = self.embedding
        if not emb.adapter_enabled:
            return out
        low = (x @ emb.lora_B.to(x.dtype)) * emb.scaling
        return out + low @ emb.lora_A.to(x.dtype)

    def extend_projection(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden', weight') with ``hidden' @ weight'^T`` = this head's logits: [h, (alpha / r) h B] and [W, A^T].
        What the chunked loss (``GPT.loss_sum``) multiplies chunk by chunk, so the adapter is exact there too, at
        the cost of the output matrix's gradient being formed (r columns wider), as in full tuning."""
        emb = self.embedding
        if not emb.adapter_enabled:
            return hidden, self.weight
        low = (hidden @ emb.lora_B.to(hidden.dtype)) * emb.scaling
        return torch.cat([hidden, low], dim=-1), torch.cat([self.weight, emb.lora_A.t().to(self.weight.dtype)], dim=1)


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoRALinear | LoRAEmbedding]]:
    """Every adapted layer (its name, the layer); a ``TiedLoRAHead`` is not one: its adapter is its embedding's."""
    return ((name, m) for name, m in model.named_modules() if isinstance(m, (LoRALinear, LoRAEmbedding)))


def check_rank(r: int, shapes: dict[str, tuple[int, int]], flag: str = "--model.lora_r") -> None:
    """A one-line error, before anything is allocated, for a rank no adapted layer can use: ``B A`` has rank at most
    the smaller side of the matrix it adapts, so a larger ``r`` only allocates ``r x (in + out)`` values per layer
    (10^9 asks for terabytes). ``shapes``: each target's weight shape."""
    if not shapes:
        return
    name, shape = min(shapes.items(), key=lambda item: min(item[1]))
    if r > min(shape):
        raise UserError(
            f"{flag} {r}: a LoRA rank above the smaller side of the matrices it adapts adds nothing and only "
            f"allocates r x (in + out) values per layer; at most {min(shape)} here ({name}, {shape[1]} x {shape[0]})"
        )


def apply_lora(
    model: nn.Module, r: int = 8, alpha: float = 16, dropout: float = 0.0, targets: Sequence[str] = TARGETS
) -> nn.Module:
    """Add adapters in place to every ``nn.Linear`` whose name ends with one of ``targets`` (``c_proj`` matches the
    attention's and the MLP's) and leave only adapter parameters trainable. ``"wte"`` among ``targets``: an adapter
    on the token embedding, which the output head tied to it shares (``LoRAEmbedding``, ``TiedLoRAHead``); ``dropout``
    does not apply there. Returns ``model``."""
    if not isinstance(r, int) or r <= 0:
        raise UserError(f"LoRA rank must be a positive integer, got {r!r}")
    if not alpha > 0 or not 0.0 <= dropout < 1.0:
        raise UserError(f"LoRA alpha must be > 0 and dropout in [0, 1), got alpha={alpha}, dropout={dropout}")
    unknown = [t for t in targets if t not in ALL_TARGETS]
    if unknown:
        raise UserError(f"unknown LoRA target(s) {', '.join(unknown)}; choose among {', '.join(ALL_TARGETS)}")
    shapes = {name: tuple(child.weight.shape) for _, name, child in _children(model) if name in targets}
    check_rank(r, shapes)
    model.requires_grad_(False)
    replaced = 0
    embeddings = {}  # id of an adapted embedding's matrix -> its LoRAEmbedding, for the heads tied to it
    for module, child_name, child in _children(model):
        if child_name in targets and type(child) is nn.Linear:
            setattr(module, child_name, LoRALinear(child, r, alpha, dropout))
            replaced += 1
        elif child_name in targets and type(child) is nn.Embedding:
            embeddings[id(child.weight)] = adapted = LoRAEmbedding(child, r, alpha)
            setattr(module, child_name, adapted)
            replaced += 1
    for module, child_name, child in _children(model):
        if type(child) is nn.Linear and id(child.weight) in embeddings:
            setattr(module, child_name, TiedLoRAHead(child, embeddings[id(child.weight)]))
    if not replaced:
        raise UserError(f"no layer named {', '.join(targets)} to adapt in {type(model).__name__}")
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (W + (alpha / r) B A) and put plain ``nn.Linear`` (and
    ``nn.Embedding``) layers back: the merged model computes what the adapted one did, with no adapter left; a head
    tied to an adapted embedding stays tied to the merged matrix. Returns ``model``."""
    merged_embeddings = {}  # LoRAEmbedding -> its merged matrix, for the heads tied to it
    for module, child_name, child in _children(model):
        if isinstance(child, (LoRALinear, LoRAEmbedding)):
            with torch.no_grad():
                merged = nn.Parameter((child.weight.float() + child.delta().float()).to(child.weight.dtype))
            merged.requires_grad_(False)
            if isinstance(child, LoRAEmbedding):
                plain = nn.Embedding(child.num_embeddings, child.embedding_dim, child.padding_idx, device="meta")
                merged_embeddings[child] = merged
            else:
                plain = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None, device="meta")
                plain.bias = child.bias
            plain.weight = merged
            setattr(module, child_name, plain)
    for module, child_name, child in _children(model):
        if isinstance(child, TiedLoRAHead):
            head = nn.Linear(child.in_features, child.out_features, bias=False, device="meta")
            head.weight = merged_embeddings[child.embedding]
            setattr(module, child_name, head)
    return model


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """The base model, for as long as the context lasts: every adapter switched off (DPO's reference, for free)."""
    layers = [m for _, m in lora_layers(model)]
    states = [m.adapter_enabled for m in layers]
    for m in layers:
        m.adapter_enabled = False
    try:
        yield model
    finally:
        for m, state in zip(layers, states, strict=True):
            m.adapter_enabled = state


def hold_frozen_in(model: nn.Module, precision: str) -> None:
    """Under ``bf16-mixed`` / ``16-mixed``, store the adapted layers' frozen weights and biases in that 16-bit dtype:
    autocast would cast them to it for every matmul anyway, so the computation is the same, in half the memory."""
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    if dtype is None:
        return
    for _, layer in lora_layers(model):
        if isinstance(layer, LoRAEmbedding):  # a lookup, not a matmul: autocast leaves it (and the tied head's) alone
            continue
        layer.weight.data = layer.weight.data.to(dtype)
        if layer.bias is not None:
            layer.bias.data = layer.bias.data.to(dtype)


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' weights only, under their parameter names (``…c_attn.lora_A``)."""
    return {k: v for k, v in model.state_dict().items() if k.endswith((".lora_A", ".lora_B"))}


def lora_settings(model: nn.Module) -> dict | None:
    """(r, alpha, targets) of the adapters in ``model``, or None without adapters."""
    layers = list(lora_layers(model))
    if not layers:
        return None
    first = layers[0][1]
    return {"r": first.r, "alpha": first.alpha, "targets": sorted({n.rsplit(".", 1)[-1] for n, _ in layers})}
