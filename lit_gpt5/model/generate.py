"""Text generation: KV cache, temperature, top-k, top-p, a seed, a stop token, batches of prompts.

The command that prints it is ``lit-gpt5 generate`` (``lit_gpt5.commands.generate``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from lit_gpt5.errors import UserError
from lit_gpt5.model.gpt import GPT, KVCache


def check_sampling(
    max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None, flags: str = "--"
) -> None:
    """The one check of sampling settings, for every sampler of the package (``lit-gpt5 generate``, the training
    run's ``TextSampler``): a one-line error naming the flag (``flags``: its prefix, ``--`` or ``--sampler.``)."""
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise UserError(f"{flags}max_new_tokens must be >= 0, got {max_new_tokens}")
    if not math.isfinite(temperature) or temperature < 0:
        raise UserError(f"{flags}temperature must be a finite number >= 0 (0 = greedy), got {temperature}")
    if top_p is not None and not 0 < top_p <= 1:
        raise UserError(f"{flags}top_p must be in (0, 1], got {top_p}")
    if top_k is not None and top_k <= 0:
        raise UserError(f"{flags}top_k must be a positive integer, got {top_k}")


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next token ids (B,) from last-position logits (B, vocab). ``temperature == 0`` is greedy."""
    if not bool(torch.isfinite(logits).all()):
        raise UserError("the model produced NaN or infinite logits: its weights are not finite; use another checkpoint")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p; the most likely token always stays.
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)


def _left_pad(prompts: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    width = max(len(p) for p in prompts)
    idx = torch.zeros(len(prompts), width, dtype=torch.long, device=device)
    mask = torch.zeros(len(prompts), width, dtype=torch.bool, device=device)
    for row, p in enumerate(prompts):
        idx[row, width - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
        mask[row, width - len(p) :] = True
    return idx, mask


def _positions(idx: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Position ids: 0, 1, ... from each row's first real token (left padding takes position 0, masked out)."""
    if mask is None:
        return torch.arange(idx.size(1), device=idx.device).expand(idx.size(0), -1)
    return (mask.cumsum(-1) - 1).clamp(min=0)


@torch.inference_mode()
def stream(
    model: GPT,
    prompts: torch.Tensor | Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop_token: int | None = None,
    use_cache: bool = True,
) -> Iterator[torch.Tensor]:
    """Yield the next token of every prompt (a (B,) tensor) as soon as it is sampled.

    Prompts of different lengths are left-padded; padding is masked out of attention and each row keeps its own
    position ids, so a prompt gets the same tokens alone or in a batch. A row that produced ``stop_token`` keeps
    yielding it; the stream ends when all rows have stopped. Past the model's ``block_size`` positions the context
    slides (the cache cannot, so that part recomputes), as generation without a cache would.
    """
    device = next(model.parameters()).device
    if isinstance(prompts, torch.Tensor):
        idx, mask = prompts.to(device), None
    else:
        idx, mask = _left_pad(prompts, device)
        if bool(mask.all()):
            mask = None
    batch_size = idx.size(0)
    block = model.config.block_size
    if idx.size(1) > block:
        idx, mask = idx[:, -block:], None if mask is None else mask[:, -block:]
    pos = _positions(idx, mask)
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    was_training = model.training
    model.eval()
    try:
        cache = None
        if use_cache:
            dtype = model.transformer.wte.weight.dtype
            cache = KVCache(model.config, batch_size, min(block, idx.size(1) + max_new_tokens), device, dtype)
        logits = model(idx, input_pos=pos, kv_cache=cache, padding_mask=mask, last_only=True)[:, -1]
        done = torch.zeros(batch_size, dtype=torch.bool, device=device)
        for step in range(max_new_tokens):
            nxt = sample_next(logits, temperature, top_k, top_p, generator)
            if stop_token is not None:
                nxt = nxt.masked_fill(done, stop_token)
                done |= nxt == stop_token
            yield nxt
            if step == max_new_tokens - 1 or (stop_token is not None and bool(done.all())):
                return
            # The whole sequence is kept even with a cache: it is needed again if the cache fills up.
            idx = torch.cat([idx, nxt[:, None]], dim=1)
            if mask is not None:
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            if cache is not None and cache.length < cache.max_len:
                pos = pos[:, -1:] + 1
                logits = model(nxt[:, None], input_pos=pos, kv_cache=cache)[:, -1]
                continue
            # No cache, or the context is full: run on the last block_size tokens again.
            cache = None
            idx, mask = idx[:, -block:], None if mask is None else mask[:, -block:]
            pos = _positions(idx, mask)
            logits = model(idx, input_pos=pos, padding_mask=mask, last_only=True)[:, -1]
    finally:
        model.train(was_training)


def generate(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop_token: int | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Extend ``idx`` (B, T) by up to ``max_new_tokens``; returns (B, T + generated)."""
    steps = list(stream(model, idx, max_new_tokens, temperature, top_k, top_p, seed, stop_token, use_cache))
    return torch.cat([idx, torch.stack(steps, dim=1).to(idx.device)], dim=1) if steps else idx


def generate_batch(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop_token: int | None = None,
    use_cache: bool = True,
) -> list[list[int]]:
    """Completions (new tokens only, without the stop token) of prompts of any lengths, generated as one batch."""
    steps = list(stream(model, prompts, max_new_tokens, temperature, top_k, top_p, seed, stop_token, use_cache))
    if not steps:
        return [[] for _ in prompts]
    rows = torch.stack(steps, dim=1).tolist()
    if stop_token is None:
        return rows
    return [row[: row.index(stop_token)] if stop_token in row else row for row in rows]
