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

The attention path (``attention_with_dropout``) was later written out as one autograd Function with a softmax that
writes bf16 directly (see ``_CausalAttentionWithDropout``): same masks, same operations, but the softmax's output is
rounded to bf16 once inside the kernel rather than after a float32 pass, so a CPU run with dropout under bf16 differs
from one of the version before it by bf16 rounding (as two GPUs' kernels would), not by its masks. Later still, the
attention went in causal row blocks (``causal_row_blocks``), each drawing the mask of only the keys it sees: those masks
are not the earlier version's (same distribution), so a CPU run with dropout does not repeat one from before that.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lit_gpt5.compat import softmax_backward

LANE_BITS = 15  # the bits of each 16-bit lane that are uniform (a 64-bit draw of torch's CPU generator has 63)


def _lanes(shape: torch.Size | tuple[int, ...], p: float) -> tuple[torch.Tensor, int, float]:
    """One 15-bit uniform lane per element (int16, flat), the threshold below which an element is dropped, and
    1 / (the exact keep probability)."""
    n = 1
    for size in shape:
        n *= size
    threshold = round(p * 2**LANE_BITS)
    draws = torch.empty((n + 3) // 4, dtype=torch.int64).random_()  # four lanes of 16 bits per 64-bit draw
    lanes = draws.view(torch.int16)[:n].bitwise_and_(2**LANE_BITS - 1)
    return lanes, threshold, 1.0 / (1.0 - threshold / 2**LANE_BITS)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> tuple[torch.Tensor, float]:
    """A boolean mask of ``shape`` keeping each element with probability ~1 - p, and 1 / (its exact keep
    probability)."""
    lanes, threshold, scale = _lanes(shape, p)
    return (lanes >= threshold).view(shape), scale


def _keep_values(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype) -> tuple[torch.Tensor, float]:
    """``keep_mask`` as 1 and 0 in ``dtype`` (same draws, same mask), and its scale. A CPU multiplies by a 16-bit
    mask ~4x faster than by a boolean one (whose mixed-dtype loop is not vectorised: Model 5's attention weights,
    12.6M elements, 8 ms against 2 ms), and for 16-bit dtypes the mask is made from the lanes' bits (1.5 ms where
    compare-and-cast takes 9): lane - threshold is negative exactly when the element is dropped, so its sign,
    shifted across the lane and inverted, selects the bit pattern of 1.0."""
    lanes, threshold, scale = _lanes(shape, p)
    if dtype.itemsize != 2 or not dtype.is_floating_point:
        return (lanes >= threshold).to(dtype).view(shape), scale
    one = torch.ones((), dtype=dtype).view(torch.int16).item()
    bits = lanes.sub_(threshold).bitwise_right_shift_(LANE_BITS).bitwise_not_().bitwise_and_(one)
    return bits.view(dtype).view(shape), scale


class _MaskedScale(torch.autograd.Function):
    """x * mask * scale, saving only the mask for backward (as ``nn.Dropout`` does; here a 1/0 tensor in x's dtype,
    see ``_keep_values``: one byte more per element in bf16 than a boolean mask, for a ~4x faster multiply)."""

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
    mask, scale = _keep_values(x.shape, p, x.dtype)
    return _MaskedScale.apply(x, mask, scale)


# Model 5 (T = 256), forward and backward of one layer, freed memory kept as the CLI trains: 4 blocks of 64 rows 51 ms
# against 67 for the whole square at once in bf16 (native), 130 against 148 as an AVX2-only CPU in float32
# (benchmarks/cpu_paths.py --paths dropout).
# 8 blocks of 32 rows lose to their operand copies and thinner products: 68 ms against 4 blocks' 62 in bf16, and 161
# against 148 for the whole square as an AVX2 CPU (a one-off comparison in one process, glibc's freed memory kept).
ROW_BLOCK_MIN = 64  # query rows per block at least
ROW_BLOCKS_MAX = 4


def causal_row_blocks(T: int, blocks: int | None = None) -> list[tuple[int, int]]:
    """The query rows' blocks, [lo, hi), of a causal T x T attention computed block by block: rows lo..hi-1 see
    only keys 0..hi-1, so the products, softmax and mask of the keys past hi are skipped (a fraction
    (blocks - 1) / (2 * blocks) of the T x T square: 37.5% at 4 blocks). ``blocks`` defaults to T // 64, at most 4;
    1 is the whole square at once."""
    if blocks is None:
        blocks = min(ROW_BLOCKS_MAX, max(1, T // ROW_BLOCK_MIN))
    blocks = max(1, min(blocks, T))
    return [(T * i // blocks, T * (i + 1) // blocks) for i in range(blocks)]


class _CausalAttentionWithDropout(torch.autograd.Function):
    """softmax(causal(q k^T / sqrt(d))) with dropout, times v; forward and backward written out for a CPU.

    The query rows go in blocks (``causal_row_blocks``), each multiplied only by the keys it can see, so the masked
    (future) corner is neither computed nor drawn a dropout mask for. The softmax reads the (bf16) scores and writes
    bf16 weights, computing in float32 inside one kernel (as ``torch.softmax(x, dtype=float32).to(bf16)`` would,
    without the two float32 copies), and backward is the softmax's own formula on those weights. The dropout mask is
    a 16-bit 1/0 tensor, its scale applied to the T x d products instead of the weights, and the masked scores need
    no gradient pass: their weights are exactly 0. Every product is a ``bmm`` of (batch x head)-flattened operands,
    transposed by strides: ``matmul`` on the 4-d transposes would copy each operand first. Kept for backward: q
    (scaled), k, v, and each block's weights and mask (4 bytes per computed weight, where autograd's chain of the
    same operations keeps 9 per T x T element).
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float, blocks: int | None) -> torch.Tensor:
        *batch, T, d = q.shape
        S = k.size(-2)
        scale = d**-0.5
        q3 = (q * scale).reshape(-1, T, d)  # the scale on q: T x d products instead of T x S
        k3, v3 = k.reshape(-1, S, d), v.reshape(-1, S, d)
        y = torch.empty_like(q3)
        rows = causal_row_blocks(T, blocks)
        saved, keep_scale = [], 1.0
        for lo, hi in rows:
            end = hi + S - T  # the keys rows lo..hi-1 see
            scores = torch.bmm(q3[:, lo:hi], k3[:, :end].transpose(1, 2))
            future = torch.ones(hi - lo, end, dtype=torch.bool, device=q.device).triu_(lo + S - T + 1)
            weights = torch.softmax(scores.masked_fill_(future, float("-inf")), dim=-1)
            del scores
            keep, keep_scale = _keep_values(weights.shape, p, weights.dtype)
            torch.bmm(weights * keep, v3[:, :end], out=y[:, lo:hi])
            saved += [weights, keep]
        ctx.save_for_backward(q3, k3, v3, *saved)
        ctx.scale, ctx.keep_scale, ctx.rows = scale, keep_scale, rows
        return y.mul_(keep_scale).view(*batch, T, d)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        q3, k3, v3, *saved = ctx.saved_tensors
        shape = grad_y.shape
        T, S = shape[-2], k3.size(1)
        g3 = grad_y.reshape(-1, T, shape[-1])
        grad_q, grad_k, grad_v = torch.empty_like(q3), None, None
        # The last block sees every key: it writes grad_k and grad_v whole, the earlier ones add to their first rows.
        for i in reversed(range(len(ctx.rows))):
            (lo, hi), weights, keep = ctx.rows[i], saved[2 * i], saved[2 * i + 1]
            end, g = hi + S - T, g3[:, lo:hi]
            grad_weights = torch.bmm(g, v3[:, :end].transpose(1, 2)).mul_(keep)  # x keep_scale: folded in below
            grad_scores = softmax_backward(grad_weights, weights, -1)
            del grad_weights
            torch.bmm(grad_scores, k3[:, :end], out=grad_q[:, lo:hi])
            kept = (weights * keep).transpose(1, 2)
            if grad_k is None:
                grad_k = torch.bmm(grad_scores.transpose(1, 2), q3[:, lo:hi])
                grad_v = torch.bmm(kept, g)
            else:
                grad_k[:, :end].baddbmm_(grad_scores.transpose(1, 2), q3[:, lo:hi])
                grad_v[:, :end].baddbmm_(kept, g)
            del grad_scores, kept
        grad_q.mul_(ctx.scale * ctx.keep_scale)
        grad_k.mul_(ctx.keep_scale)  # q3 already carries the scale
        grad_v.mul_(ctx.keep_scale)
        batch = shape[:-2]
        k_shape = (*batch, *k3.shape[1:])
        return grad_q.view(shape), grad_k.view(k_shape), grad_v.view(k_shape), None, None


def attention_with_dropout(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float, blocks: int | None = None
) -> torch.Tensor:
    """Causal attention with dropout on its weights, as ``F.scaled_dot_product_attention(q, k, v, dropout_p=p,
    is_causal=True)`` computes it on a CPU (no fused CPU kernel takes dropout, so it runs its math path), with each
    row block's mask drawn as ``keep_mask`` draws it (``blocks``: see ``causal_row_blocks``). The two products run in
    the inputs' dtype (bf16 under autocast, accumulated in float32 by the GEMM) and the softmax in float32 over the
    scores so rounded, as nanoGPT's attention without flash does under autocast; the math path would cast q, k and v
    to float32 and multiply there, at half the speed of bf16 on a CPU that computes it natively. Model 5's
    attention, forward and backward, one layer: 368 ms on the math path, 143 ms as autograd's chain of these
    operations, and less written out (``_CausalAttentionWithDropout``; ``benchmarks/cpu_paths.py``)."""
    return _CausalAttentionWithDropout.apply(q, k, v, p, blocks)


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same arguments, no state) whose masks are cheap on a CPU: ``dropout`` above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)
