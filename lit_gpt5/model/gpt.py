"""GPT-2, the network: one readable file, torch only.

Parameter names follow nanoGPT and Hugging Face (``transformer.h.0.attn.c_attn.weight`` ...), so converting weights
is a matter of transposing HF's Conv1D matrices, nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from lit_gpt5.model.dropout import Dropout, attention_with_dropout
from lit_gpt5.model.loss import cross_entropy_sum, cross_entropy_tokens, linear_cross_entropy_sum, linear_token_losses


@dataclass
class GPTConfig:
    block_size: int = 1024  # positions the model has embeddings for: the longest context it can ever see
    vocab_size: int = 50257  # the GPT-2 BPE: 50,000 merges + 256 bytes + <|endoftext|>
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0  # 0 for pretraining on lots of data; ~0.1 when a small book is seen many times
    bias: bool = True  # GPT-2 has biases in Linear and LayerNorm; False is slightly faster and as good
    layer_norm_epsilon: float = 1e-5  # GPT-2's value; matters for bit-level agreement with HF weights

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")

    @classmethod
    def from_name(cls, name: str, **overrides) -> GPTConfig:
        """A named size: ``model5``/``gpt2`` (124M), ``gpt2-medium``, ``gpt2-large``, ``gpt2-xl``, or a small CPU size
        (``gpt-mini``, ``gpt-micro``, ``gpt-nano``, minGPT's names). Keyword overrides change single fields."""
        if name not in CONFIGS:
            from lit_gpt5.errors import UserError

            raise UserError(f"unknown model name {name!r}; choose one of: {', '.join(CONFIGS)}")
        return replace(CONFIGS[name], **{k: v for k, v in overrides.items() if v is not None})


CONFIGS: dict[str, GPTConfig] = {
    # Model 5 of the experiment is GPT-2 small, trained from scratch.
    "model5": GPTConfig(n_layer=12, n_head=12, n_embd=768),
    "gpt2": GPTConfig(n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": GPTConfig(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": GPTConfig(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": GPTConfig(n_layer=48, n_head=25, n_embd=1600),
    # Sizes that train on a laptop CPU. With 50,257 tied embeddings most of their parameters and FLOPs are the
    # vocabulary projection, so depth and width are cheap to add until n_embd grows.
    "gpt-mini": GPTConfig(n_layer=6, n_head=6, n_embd=192, block_size=256),
    "gpt-micro": GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=256),
    "gpt-nano": GPTConfig(n_layer=3, n_head=3, n_embd=48, block_size=256),
}


class KVCache:
    """Keys and values of the positions already processed, preallocated for ``max_len`` tokens.

    With it, generating a token runs the model on that one token instead of the whole sequence again. ``key_mask``
    marks which cached positions are real tokens; it exists only once a left-padded batch of prompts was fed in.
    """

    def __init__(
        self,
        config: GPTConfig,
        batch_size: int,
        max_len: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if max_len > config.block_size:
            raise ValueError(f"a cache of {max_len} positions exceeds the model's {config.block_size}")
        shape = (batch_size, config.n_head, max_len, config.n_embd // config.n_head)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.max_len = max_len
        self.length = 0
        self.key_mask: torch.Tensor | None = None


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if kv is not None:
            k_cache, v_cache = kv
            k_cache[:, :, start : start + T] = k
            v_cache[:, :, start : start + T] = v
            k, v = k_cache[:, :, : start + T], v_cache[:, :, : start + T]
        if self.training and self.dropout > 0 and attn_mask is None and kv is None and x.device.type == "cpu":
            # No fused CPU kernel takes dropout: the causal product written out, with cheap dropout masks.
            y = attention_with_dropout(q, k, v, self.dropout)
        else:
            # Fused attention (flash / memory-efficient kernels): never materializes the T x T matrix. Without an
            # explicit mask it is causal, except for a single new token, which may see every cached position.
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=attn_mask,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=attn_mask is None and T > 1,
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask, kv, start)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        # Recompute each block's activations in the backward pass instead of storing them: ~1/3 more compute for
        # activation memory that no longer grows with depth. What lets GPT-2 Large/XL fine-tune on one GPU.
        self.gradient_checkpointing = False
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.tie_weights()
        self.apply(self._init_weights)
        # GPT-2's scaled init: each block adds two residual branches, so their output projections start with std
        # 0.02 / sqrt(2 * n_layer) to keep the residual stream's variance independent of depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    # The output matrix's name in state dicts, ours and Hugging Face's: a second name for the token embedding.
    tied_key = "lm_head.weight"

    def tie_weights(self) -> None:
        """The output projection is the token embedding, as in GPT-2: 38.6M fewer parameters for the 124M model.
        Called again after loading a state dict with ``assign=True``, which replaces the shared Parameter."""
        self.lm_head.weight = self.transformer.wte.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, counting the tied embedding once; ``non_embedding`` leaves out the position embeddings."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def flops_per_token(self, seq_len: int, training: bool = True) -> int:
        """Matmul FLOPs per token (PaLM appendix B): 2N forward, 6N with backward, plus attention scores. N counts the
        tied output matrix once (the vocabulary projection is a matmul) and not the position table (a lookup). The
        one FLOP count of the package: MFU, ThroughputMonitor and the benchmarks all read it."""
        cfg = self.config
        attn = 4 * cfg.n_layer * seq_len * cfg.n_embd  # QK^T and AV: 2 * seq_len * n_embd each, per layer
        forward = 2 * self.num_params(non_embedding=True) + attn
        return 3 * forward if training else forward

    def forward(
        self,
        idx: torch.Tensor,
        input_pos: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        padding_mask: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Token ids (B, T) -> logits (B, T, vocab_size), or (B, 1, vocab_size) with ``last_only``.

        For generation: ``input_pos`` (B, T) are the position ids (default: the next T positions), ``kv_cache`` holds
        the earlier positions' keys and values and is advanced by T, and ``padding_mask`` (B, T) is False at the
        left padding of a batch of prompts of different lengths, which no token may attend to. ``last_only`` skips
        the vocabulary projection of all but the last position: sampling needs no more, and for a long prompt it
        is most of the work.
        """
        x = self.features(idx, input_pos, kv_cache, padding_mask)
        return self.lm_head(x[:, -1:] if last_only else x)

    def loss_sum(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor,
        chunk_size: int = 0,
        softmax_rows: int | None = None,
        input_pos: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of the cross-entropy over targets != -100, their number): the language-model loss, the one way every
        trainer, benchmark and memory measurement of the package computes it. ``chunk_size`` > 0 projects that many
        positions to the vocabulary at a time (``lit_gpt5.model.loss``): the same loss and gradients without ever
        holding all (B x T x 50,257) logits; 0 is the plain full-logits loss. ``softmax_rows``: see
        ``lit_gpt5.model.loss``. ``input_pos`` and ``segments`` (B, T): packed rows (see ``features``)."""
        if chunk_size and self._head_readable():
            hidden, weight = self._projection(self.features(idx, input_pos, segments=segments))
            return linear_cross_entropy_sum(hidden, weight, targets, chunk_size, softmax_rows)
        return cross_entropy_sum(self.lm_head(self.features(idx, input_pos, segments=segments)), targets)

    def token_losses(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor,
        chunk_size: int = 0,
        softmax_rows: int | None = None,
        input_pos: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Cross-entropy of every position, shaped like ``targets``, 0 where the target is -100: for losses weighted
        per token or summed per sequence (DPO's log-probabilities). Arguments as in ``loss_sum``."""
        if chunk_size and self._head_readable():
            hidden, weight = self._projection(self.features(idx, input_pos, segments=segments))
            return linear_token_losses(hidden, weight, targets, chunk_size, softmax_rows)
        return cross_entropy_tokens(self.lm_head(self.features(idx, input_pos, segments=segments)), targets)

    def _projection(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states, output matrix) whose product is the logits, for a chunked loss to multiply a few rows at a
        time: ``lm_head``'s weight, or, for a head that adds a low-rank term (LoRA on the tied embedding,
        ``lit_gpt5.model.lora.TiedLoRAHead``), both widened by its rank."""
        extend = getattr(self.lm_head, "extend_projection", None)
        return extend(hidden) if extend is not None else (hidden, self.lm_head.weight)

    def _head_readable(self) -> bool:
        """Whether the output matrix can be read outside ``lm_head``'s forward. A sharding scheme that gathers a
        weight only inside its module's forward (DeepSpeed ZeRO-3) leaves an empty tensor here in between: the chunked
        loss then falls back to projecting through ``lm_head`` itself, whose forward gathers it."""
        return self.lm_head.weight.numel() > 0

    def features(
        self,
        idx: torch.Tensor,
        input_pos: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        padding_mask: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The final hidden states (B, T, n_embd), before the vocabulary projection: what a chunked loss projects a
        few positions at a time (``lit_gpt5.model.loss.linear_cross_entropy_sum``) instead of materialising all logits.

        Packed rows (several examples one after the other in a row, no padding between them): ``segments`` (B, T)
        numbers the example each position belongs to, and attention never crosses from one to another; ``input_pos``
        (B, T) restarts at 0 with each example. Each example then computes exactly what it would alone in a row."""
        B, T = idx.shape
        start = kv_cache.length if kv_cache is not None else 0
        # A packed row may be longer than the model's context: what must fit is each sequence's positions.
        length = int(input_pos.max()) + 1 if segments is not None and input_pos is not None else start + T
        if length > (kv_cache.max_len if kv_cache is not None else self.config.block_size):
            raise ValueError(
                f"sequence of length {length} is longer than the model's {self.config.block_size} positions"
            )
        if input_pos is None:
            input_pos = torch.arange(start, start + T, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(input_pos))
        attn_mask = self._attention_mask(B, T, start, idx.device, kv_cache, padding_mask, segments)
        for i, block in enumerate(self.transformer.h):
            kv = (kv_cache.k[i], kv_cache.v[i]) if kv_cache is not None else None
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint

                x = checkpoint(block, x, attn_mask, kv, start, use_reentrant=False)
            else:
                x = block(x, attn_mask, kv, start)
        if kv_cache is not None:
            kv_cache.length += T
        return self.transformer.ln_f(x)

    @staticmethod
    def _attention_mask(
        B: int,
        T: int,
        start: int,
        device: torch.device,
        kv_cache: KVCache | None,
        padding_mask: torch.Tensor | None,
        segments: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """A boolean (B or 1, 1, T, start + T) mask, or None when plain causal attention is exact (the fast path)."""
        if segments is not None:  # packed rows: causal within each example, block-diagonal across them
            causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()
            return (causal & (segments[:, :, None] == segments[:, None, :]))[:, None]
        keys_valid = padding_mask
        if kv_cache is not None:
            if padding_mask is not None and kv_cache.key_mask is None:
                kv_cache.key_mask = torch.ones(B, kv_cache.max_len, dtype=torch.bool, device=device)
            if kv_cache.key_mask is not None:
                kv_cache.key_mask[:, start : start + T] = True if padding_mask is None else padding_mask
                keys_valid = kv_cache.key_mask[:, : start + T]
        if keys_valid is None and (start == 0 or T == 1):
            return None
        queries = torch.arange(start, start + T, device=device)[:, None]
        keys = torch.arange(start + T, device=device)[None, :]
        mask = (keys <= queries)[None, None]
        if keys_valid is not None:
            # A padding query has no valid key; letting it see itself keeps softmax finite (its output is unused).
            mask = (mask & keys_valid[:, None, None, :]) | (keys == queries)
        return mask
