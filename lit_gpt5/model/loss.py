"""Token-level cross-entropy as (sum, count), so callers can average over exactly the tokens they mean.

Pretraining supervises every target; instruction tuning only the response. Returning the sum and the number of
supervised tokens lets the LightningModule divide by the supervised tokens of a whole optimizer step (across
micro-batches and ranks) rather than averaging per-batch means, which would weight tokens unequally.

The vocabulary projection is most of a GPT-2's loss memory: B x T x 50,257 logits, upcast to float32 for the
softmax, plus their gradient. ``linear_cross_entropy_sum`` and ``linear_token_losses`` take the final hidden states
and the output matrix instead and work through the positions ``chunk_size`` at a time, so the loss never holds more
than one chunk of logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def cross_entropy_sum(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of token losses over targets != ignore_index, and how many there are. All-ignored gives (0, 0), not NaN."""
    # float32 log-softmax: bf16 logits lose ~3 significant digits, enough to bias a loss averaged over 50,257 classes.
    loss_sum = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=ignore_index, reduction="sum"
    )
    return loss_sum, (targets != ignore_index).sum()


def cross_entropy_tokens(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """The loss of every position, shaped like ``targets``, 0 where the target is ignored (float32 log-softmax)."""
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=ignore_index, reduction="none"
    ).view_as(targets)


def mean_loss(loss_sum: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """loss_sum / count, with 0 (never NaN) when nothing was supervised."""
    return loss_sum / count.clamp(min=1)


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The dtype the projection runs in: autocast's when it is on (as nn.Linear would), else the input's."""
    device = hidden.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype


# Rows per float32 softmax pass on a CPU: 16 x 50,257 float32 logits are 3.2 MB, small enough to stay in cache from
# one pass to the next, so the cast, log-softmax, exp and copy back read the cache instead of memory (a 512-position
# GPT-2 chunk: 34 -> 20 ms here for any block of 4 to 64 rows; bitwise the same result). On an accelerator each op
# over the whole chunk is one kernel launch instead of one per block.
CPU_SOFTMAX_ROWS = 16


def _chunk(
    h,
    w,
    targets,
    compute_grad: bool,
    rows: int | None = None,
    out: torch.Tensor | None = None,
    vocab: int | None = None,
):
    """Loss terms of one chunk of positions, and with ``compute_grad`` d(loss of each row)/d(logits) in ``w``'s dtype,
    written over the logits (which are not needed again). Rows of ignored targets are not zeroed there: callers mask
    the (rows x C) products instead, which is cheaper. Log-softmax in float32, as in ``cross_entropy_sum``, ``rows``
    positions at a time (None: ``CPU_SOFTMAX_ROWS`` on a CPU, all of them elsewhere; compiled code fuses the passes
    itself). ``out``: a (>= rows of h) x vocabulary buffer for the logits, reused from chunk to chunk (``_Buffers``).
    ``vocab``: the real vocabulary when ``w`` has zero rows after it (``_output_matrix``): their logits are 0, left out
    of the softmax, and their gradient columns stay 0. No data-dependent shapes, so it traces and compiles."""
    product = h @ w.t() if out is None else torch.mm(h, w.t(), out=out[: h.size(0)])
    logits = product if vocab is None or vocab == product.size(1) else product[:, :vocab]
    n = logits.size(0)
    if rows is None:
        rows = max(n, 1) if logits.device.type != "cpu" or torch.compiler.is_compiling() else CPU_SOFTMAX_ROWS
    valid = targets != IGNORE_INDEX
    index = targets.clamp(min=0)[:, None]
    losses = torch.empty(n, dtype=torch.float32, device=logits.device)
    for start in range(0, n, rows):
        block = slice(start, start + rows)
        logp = torch.log_softmax(logits[block], dim=-1, dtype=torch.float32)
        losses[block] = -logp.gather(1, index[block]).squeeze(1)
        if compute_grad:
            logits[block] = logp.exp_().scatter_add_(1, index[block], -valid[block, None].float())  # softmax - 1-hot
    losses = torch.where(valid, losses, 0.0)
    return losses, (product if compute_grad else None), valid


# Rows of a (vocabulary x C) gradient added per call on a CPU. A float32 += bf16 add there first casts the bf16
# operand into a new float32 tensor the size of the operand: 154 MB for GPT-2's, freshly mapped (and page-faulted)
# memory on every call under glibc's defaults, 75 ms, where 4,096 rows at a time (a 12.6 MB cast that the allocator
# reuses and the cache holds) take 12.6 ms (bitwise the same sum; 2-core Zen 4). ``keep_freed_memory`` removes most
# of the faults, not the second pass over the matrix.
CPU_ACCUMULATE_ROWS = 4096

# The loss's products take the vocabulary dimension rounded up to a multiple of this: GEMM kernels work in tiles of
# that dimension, and GPT-2's 50,257 leaves a ragged last one. Padded to 50,304 (= 786 x 64), a 512-position chunk's
# weight-gradient product runs at ~400 GFLOP/s instead of ~320 (bf16, 2-core Zen 4), and the loss of Model 5's 4,096
# positions, forward and backward, takes 0.94x the time (``benchmarks/cpu_paths.py --paths padding``). nanoGPT pads the
# model's vocabulary itself for the same reason on GPUs; here only the loss's computation is padded (zero rows
# appended to its bf16 copy of the output matrix: their logits are 0, left out of the softmax): same model,
# parameters, loss and gradients. Only where the loss copies the matrix to another dtype anyway: in float32 the copy
# would cost a 154 MB pass for no measured gain.
VOCAB_MULTIPLE = 64


def padded_vocab(vocab: int) -> int:
    """The vocabulary size the chunked loss's products use in mixed precision: ``vocab`` rounded up to
    ``VOCAB_MULTIPLE``."""
    return -(-vocab // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def _output_matrix(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``weight`` in the compute dtype; when that is a copy, with zero rows appended up to ``padded_vocab`` (the copy
    costs the same either way)."""
    if weight.dtype == dtype or padded_vocab(weight.size(0)) == weight.size(0):
        return weight.to(dtype)
    w = weight.new_empty((padded_vocab(weight.size(0)), weight.size(1)), dtype=dtype)
    w[: weight.size(0)].copy_(weight)
    w[weight.size(0) :].zero_()
    return w


def _accumulate(total: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    """total += part in float32, with the cast on the fly: one pass over the matrix, where cast + add would be two
    (each hundreds of MB for GPT-2, memory-bound on a CPU); on a CPU ``CPU_ACCUMULATE_ROWS`` rows at a time."""
    if part.device.type != "cpu" or part.dtype == total.dtype:
        return total.add_(part)
    for start in range(0, part.size(0), CPU_ACCUMULATE_ROWS):
        total[start : start + CPU_ACCUMULATE_ROWS].add_(part[start : start + CPU_ACCUMULATE_ROWS])
    return total


class _Buffers:
    """The two large products of every chunk, allocated once per call and written again by each chunk: the logits
    (chunk x vocabulary) and the chunk's part of the weight gradient (vocabulary x C), which is added to the float32
    sum of the parts before it. Fresh tensors of that size (51 and 77 MB for GPT-2 in bf16) are fresh memory mappings
    on a CPU under glibc's defaults, page-faulted on every chunk: 11 to 20 ms of a 113 to 145 ms product each. Same
    values; at most one chunk's worth of each, as before."""

    def __init__(self, rows: int, weight: torch.Tensor) -> None:
        self.logits = weight.new_empty((rows, weight.size(0)))
        self.grad_w: torch.Tensor | None = None  # the float32 sum
        self._part: torch.Tensor | None = None

    def add_weight_grad(self, grad: torch.Tensor, h: torch.Tensor) -> None:
        """grad_w += grad^T h (the first chunk's product is cast to float32 and kept as the sum)."""
        if self.grad_w is None:
            self.grad_w = (grad.t() @ h).float()
            return
        if self._part is None:
            self._part = grad.new_empty((grad.size(1), h.size(1)))
        _accumulate(self.grad_w, torch.mm(grad.t(), h, out=self._part))

    def weight_grad(self, weight: torch.Tensor) -> torch.Tensor:
        """The float32 sum; zeros shaped like ``weight`` when no chunk had any position."""
        if self.grad_w is None:
            return torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        return self.grad_w


class _LinearCrossEntropySum(torch.autograd.Function):
    """sum_t CE(h_t W^T, y_t), chunk by chunk, with the gradients computed in the same pass.

    The loss is the last operation of a training step and its upstream gradient is one scalar, so d(loss)/dh and
    d(loss)/dW can be accumulated while each chunk's logits exist and scaled in backward: no logits are stored or
    recomputed, and no more than one chunk of them exists at a time.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size: int, dtype: torch.dtype, rows: int | None):
        w, vocab = _output_matrix(weight, dtype), weight.size(0)
        # Only the gradients that are needed: with a frozen output matrix (LoRA) no (vocabulary x C) accumulator.
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_needed = need_h or need_w
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        buffers = _Buffers(min(chunk_size, hidden.size(0)), w)
        for start in range(0, hidden.size(0), chunk_size):
            h = hidden[start : start + chunk_size].to(dtype)
            losses, grad, valid = _chunk(
                h, w, targets[start : start + chunk_size], grad_needed, rows, buffers.logits, vocab
            )
            total += losses.sum()
            if grad_needed:
                mask = valid[:, None].to(dtype)
                if need_h:
                    grad_h[start : start + chunk_size] = (grad @ w) * mask
                if need_w:
                    buffers.add_weight_grad(grad, h * mask)
        grad_w = buffers.weight_grad(w)[:vocab] if need_w else None  # the padding's rows are 0: dropped
        del buffers
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_total):
        # Scaled in place: no second copy of d/dW (vocabulary x n_embd floats). The graph is single-use (as every
        # training step's is); backward through it twice would scale twice.
        grad_h, grad_w = ctx.saved_tensors
        if grad_h is not None:
            grad_h.mul_(grad_total.to(grad_h.dtype))
        if grad_w is not None:
            grad_w = grad_w.mul_(grad_total).to(ctx.weight_dtype)
        return grad_h, grad_w, None, None, None, None


class _LinearTokenLosses(torch.autograd.Function):
    """CE(h_t W^T, y_t) for every position, chunk by chunk; each chunk's logits are recomputed in backward.

    For losses weighted per token afterwards (a sequence's log-probability in DPO), where no single upstream scalar
    exists; costs one more vocabulary projection in backward than the full-logits loss.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size: int, dtype: torch.dtype, rows: int | None):
        w, vocab = _output_matrix(weight, dtype), weight.size(0)
        losses = []
        for start in range(0, hidden.size(0), chunk_size):
            h, t = hidden[start : start + chunk_size].to(dtype), targets[start : start + chunk_size]
            losses.append(_chunk(h, w, t, False, rows, vocab=vocab)[0])
        ctx.save_for_backward(hidden, weight, targets)
        ctx.chunk_size, ctx.dtype, ctx.rows = chunk_size, dtype, rows
        return torch.cat(losses)

    @staticmethod
    def backward(ctx, grad_losses):
        hidden, weight, targets = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        w, vocab = _output_matrix(weight, ctx.dtype), weight.size(0)
        grad_h = torch.empty_like(hidden) if need_h else None
        buffers = _Buffers(min(ctx.chunk_size, hidden.size(0)), w)
        for start in range(0, hidden.size(0), ctx.chunk_size):
            end = start + ctx.chunk_size
            h = hidden[start:end].to(ctx.dtype)
            _, grad, valid = _chunk(h, w, targets[start:end], True, ctx.rows, buffers.logits, vocab)
            scale = torch.where(valid, grad_losses[start:end], 0.0)[:, None]  # ignored rows: no gradient
            grad = (grad.float() * scale).to(ctx.dtype)
            if need_h:
                grad_h[start:end] = grad @ w
            if need_w:
                buffers.add_weight_grad(grad, h)
            del grad
        grad_w = buffers.weight_grad(w)[:vocab].to(weight.dtype) if need_w else None
        return grad_h, grad_w, None, None, None, None


def _check_rows(softmax_rows: int | None) -> None:
    if softmax_rows is not None and (not isinstance(softmax_rows, int) or softmax_rows < 1):
        raise ValueError(f"softmax_rows must be None or a positive int, got {softmax_rows!r}")


def linear_cross_entropy_sum(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int,
    softmax_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cross_entropy_sum(hidden @ weight.T, targets)`` without ever holding more than ``chunk_size`` positions'
    logits: same loss and gradients (to float rounding). ``hidden`` is (..., C), ``targets`` the matching (...).
    ``softmax_rows``: positions per float32 softmax pass (None: ``CPU_SOFTMAX_ROWS`` on a CPU, a whole chunk
    elsewhere); any value gives the same result bit for bit, only time and memory change."""
    _check_rows(softmax_rows)
    h, t = hidden.reshape(-1, hidden.size(-1)), targets.reshape(-1)
    total = _LinearCrossEntropySum.apply(h, weight, t, chunk_size, _compute_dtype(hidden), softmax_rows)
    return total, (targets != IGNORE_INDEX).sum()


def linear_token_losses(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int,
    softmax_rows: int | None = None,
) -> torch.Tensor:
    """Per-position cross-entropy (0 where the target is ignored), shaped like ``targets``, ``chunk_size`` positions'
    logits at a time (``softmax_rows`` as in ``linear_cross_entropy_sum``)."""
    _check_rows(softmax_rows)
    h, t = hidden.reshape(-1, hidden.size(-1)), targets.reshape(-1)
    return _LinearTokenLosses.apply(h, weight, t, chunk_size, _compute_dtype(hidden), softmax_rows).view_as(targets)
