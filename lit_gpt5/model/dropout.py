"""Dropout whose masks are cheap on a CPU: the same distribution as ``nn.Dropout``, drawn from fewer random numbers.

PyTorch draws a CPU dropout mask with ``bernoulli_``: one 32-bit Mersenne Twister number per element, on one thread
(MKL's vectorised generator is used only on Intel CPUs). For Model 5's training step that is 230M elements (the
attention weights' 16 x 12 x 256 x 256 in each of the 12 layers, plus 25 activations of 16 x 256 x 768), **1.4 s of a
12.5 s step** on a 2-core AMD Zen 4, more than the optimizer, the layer norms and GELU together
(``benchmarks/roofline.py --profile``). Here each 64-bit draw of the same generator gives four elements: four 15-bit
uniform lanes, each kept when it is at or above ``round(p * 2**15)``. The drop probability is that threshold over
2**15 (0.1000061 for p = 0.1, 6e-6 from p), and kept elements are scaled by the exact inverse of the keep probability,
so the output's expectation is the input, as with ``nn.Dropout``. A mask costs ~4x less time.

The masks come from torch's default CPU generator, so a run seeded per step (``lit_gpt5.resume.state``) draws the same
masks again when it is resumed. They are not ``nn.Dropout``'s masks: a CPU run with dropout does not repeat, bit for
bit, a run of a version before this module (the distributions are the same). On a GPU, and with p = 0, nothing
changes: ``F.dropout`` and the fused attention kernels as before.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

LANE_BITS = 15  # the bits of each 16-bit lane that are uniform (a 64-bit draw of torch's CPU generator has 63)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> tuple[torch.Tensor, float]:
    """A boolean mask of ``shape`` keeping each element with probability ~1 - p, and 1 / (its exact keep
    probability)."""
    n = 1
    for size in shape:
        n *= size
    threshold = round(p * 2**LANE_BITS)
    draws = torch.empty((n + 3) // 4, dtype=torch.int64).random_()  # four lanes of 16 bits per 64-bit draw
    lanes = draws.view(torch.int16)[:n].bitwise_and_(2**LANE_BITS - 1)
    return (lanes >= threshold).view(shape), 1.0 / (1.0 - threshold / 2**LANE_BITS)


class _MaskedScale(torch.autograd.Function):
    """x * mask * scale, saving only the boolean mask for backward (as ``nn.Dropout`` does)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return x.mul(mask).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return grad.mul(mask).mul_(ctx.scale), None, None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(x, p, training)``, with masks drawn as the module docstring says on a CPU."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or not 0 < round(p * 2**LANE_BITS) < 2**LANE_BITS:  # p too close to 0 or 1 for lanes
        return F.dropout(x, p, training)
    mask, scale = keep_mask(x.shape, p)
    return _MaskedScale.apply(x, mask, scale)


def attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float) -> torch.Tensor:
    """Causal attention with dropout on its weights, as ``F.scaled_dot_product_attention(q, k, v, dropout_p=p,
    is_causal=True)`` computes it on a CPU (no fused CPU kernel takes dropout, so it runs its math path), with the
    mask drawn by ``keep_mask``. The two products run in the inputs' dtype (bf16 under autocast, accumulated in float32
    by the GEMM) and the softmax in float32 over the scores so rounded, as nanoGPT's attention without flash does under
    autocast; the math path would cast q, k and v to float32 and multiply there, at half the speed of bf16 on a CPU
    that computes it natively (Model 5's attention, forward and backward: 368 ms a layer there, 143 ms here)."""
    T, S = q.size(-2), k.size(-2)
    scores = (q * q.size(-1) ** -0.5) @ k.transpose(-2, -1)  # the scale on q: T x d products instead of T x S
    future = torch.ones(T, S, dtype=torch.bool, device=q.device).triu_(S - T + 1)
    weights = torch.softmax(scores.masked_fill_(future, float("-inf")), dim=-1, dtype=torch.float32).to(q.dtype)
    return dropout(weights, p, True) @ v


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same arguments, no state) whose masks are cheap on a CPU: ``dropout`` above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)
