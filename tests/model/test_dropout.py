"""Cheap CPU dropout masks: nn.Dropout's distribution and gradient, the attention path equal to SDPA's
with nothing dropped and to autograd's chain of the same operations."""

from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F

from lit_gpt5.model.dropout import (
    LANE_BITS,
    Dropout,
    attention_with_dropout,
    causal_row_blocks,
    dropout,
    keep_mask,
)
from lit_gpt5.model.gpt import GPT, GPTConfig


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_a_mask_in_any_dtype_is_keep_masks(dtype):
    from lit_gpt5.model.dropout import _keep_values

    torch.manual_seed(3)
    keep, scale = keep_mask((5, 7, 9), 0.3)
    torch.manual_seed(3)
    values, same_scale = _keep_values((5, 7, 9), 0.3, dtype)
    assert values.dtype == dtype and values.shape == (5, 7, 9) and scale == same_scale
    assert torch.equal(values, keep.to(dtype))


def test_every_lane_keeps_with_the_stated_probability():
    torch.manual_seed(0)
    n = 4_000_000
    mask, scale = keep_mask((n,), 0.1)
    keep = 1 - round(0.1 * 2**LANE_BITS) / 2**LANE_BITS
    assert scale == pytest.approx(1 / keep, rel=1e-12)
    # Each of the four 16-bit lanes of a 64-bit draw on its own (a lane with a fixed bit would be biased): within
    # 5 standard deviations of the keep probability.
    sd = (keep * (1 - keep) / (n / 4)) ** 0.5
    for lane in range(4):
        assert abs(mask[lane::4].float().mean().item() - keep) < 5 * sd
    assert abs(mask.float().mean().item() - 0.9) < 5 * (0.09 / n) ** 0.5  # and p itself


def test_dropout_keeps_the_expectation_and_its_gradient_is_the_mask():
    torch.manual_seed(0)
    x = torch.randn(256, 1024, requires_grad=True)
    state = torch.get_rng_state()
    y = dropout(x, 0.2, training=True)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.8) < 0.005
    scale = 1 / (1 - round(0.2 * 2**LANE_BITS) / 2**LANE_BITS)
    assert torch.allclose(y[kept], x[kept] * scale)
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() * scale)
    torch.set_rng_state(state)
    assert torch.equal(dropout(x, 0.2, training=True), y)  # the default generator: same state, same masks
    assert dropout(x, 0.2, training=False) is x and dropout(x, 0.0, training=True) is x
    ones = torch.ones(2_000_000, dtype=torch.bfloat16)
    assert dropout(ones, 0.1, training=True).float().mean().item() == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("p", [1e-6, 1.0])
def test_probabilities_the_lanes_cannot_resolve_go_to_torch(p):
    x = torch.ones(1000)
    torch.manual_seed(0)
    ours = Dropout(p)(x)
    torch.manual_seed(0)
    assert torch.equal(ours, F.dropout(x, p, True))


def reference_attention(q, k, v, p, seed, blocks=None):
    """Autograd's chain of the same operations over the whole T x T square (float32 softmax), with the masks
    ``keep_mask`` draws under ``seed`` for each row block, in order, over the keys the block sees."""
    T = q.size(-2)
    scores = q @ k.transpose(-2, -1) / q.size(-1) ** 0.5
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    softmax_dtype = torch.float32 if q.dtype == torch.bfloat16 else q.dtype
    weights = torch.softmax(scores.masked_fill(future, float("-inf")), -1, dtype=softmax_dtype).to(q.dtype)
    torch.manual_seed(seed)
    keep = torch.ones_like(weights, dtype=torch.bool)  # the future's weights are 0: its mask does not matter
    for lo, hi in causal_row_blocks(T, blocks):
        keep[..., lo:hi, :hi], scale = keep_mask((*weights.shape[:-2], hi - lo, hi), p)
    return (weights * keep * scale) @ v


def test_causal_row_blocks_cover_the_rows_once_and_thin_blocks_are_not_made():
    assert causal_row_blocks(256) == [(64 * i, 64 * (i + 1)) for i in range(4)]  # Model 5: 4 blocks of 64 rows
    assert causal_row_blocks(1024) == [(256 * i, 256 * (i + 1)) for i in range(4)]
    assert causal_row_blocks(100) == [(0, 100)] and causal_row_blocks(5, blocks=9) == [(i, i + 1) for i in range(5)]
    for T, blocks in ((17, 3), (100, None), (64, 2)):
        rows = causal_row_blocks(T, blocks)
        assert rows[0][0] == 0 and rows[-1][1] == T and all(a[1] == b[0] for a, b in pairwise(rows))


@pytest.mark.parametrize(("T", "blocks"), [(16, None), (16, 3), (17, 4), (128, None)])
def test_attention_with_dropout_is_autograds_chain_of_the_same_operations(T, blocks):
    torch.manual_seed(0)
    q, k, v, grad = (torch.randn(2, 3, T, 8, dtype=torch.float64) for _ in range(4))
    ours_in = [t.clone().requires_grad_() for t in (q, k, v)]
    ref_in = [t.clone().requires_grad_() for t in (q, k, v)]
    torch.manual_seed(7)
    ours = attention_with_dropout(*ours_in, 0.3, blocks)
    ref = reference_attention(*ref_in, 0.3, seed=7, blocks=blocks)
    assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-12)
    ours.backward(grad)
    ref.backward(grad)
    for a, b in zip(ours_in, ref_in, strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-10, atol=1e-12)
    # Another mask, another result: the mask is the one keep_mask draws from the same generator state.
    torch.manual_seed(7)
    assert not torch.allclose(attention_with_dropout(q, k, v, 0.3), reference_attention(q, k, v, 0.3, seed=8))


def test_attention_with_nothing_dropped_is_sdpas_causal_attention(monkeypatch):
    import lit_gpt5.model.dropout as module

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 16, 8) for _ in range(3))
    monkeypatch.setattr(module, "_keep_values", lambda shape, p, dtype: (torch.ones(shape, dtype=dtype), 1.0))
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    for blocks in (None, 1, 3, 16):
        assert torch.allclose(attention_with_dropout(q, k, v, 0.1, blocks), expected, atol=1e-6)


def test_attention_with_dropout_passes_gradcheck():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))

    for blocks in (1, 2, 5):

        def seeded(*inputs, blocks=blocks):
            torch.manual_seed(3)  # the same mask in every evaluation gradcheck makes
            return attention_with_dropout(*inputs, 0.2, blocks)

        assert torch.autograd.gradcheck(seeded, (q, k, v))


def test_attention_with_dropout_in_bf16_is_within_bf16_rounding_of_the_float32_softmax():
    torch.manual_seed(0)
    q, k, v, grad = (torch.randn(2, 4, 64, 32) for _ in range(4))
    exact_in = [t.double().requires_grad_() for t in (q, k, v)]
    exact = reference_attention(*exact_in, 0.1, seed=1)
    exact.backward(grad.double())
    errors = {}
    for name, fn in (("ours", attention_with_dropout), ("chain", lambda *x: reference_attention(*x, seed=1))):
        inputs = [t.bfloat16().requires_grad_() for t in (q, k, v)]
        torch.manual_seed(1)
        y = fn(*inputs, 0.1)
        y.backward(grad.bfloat16())
        got, want = [y] + [t.grad for t in inputs], [exact] + [t.grad for t in exact_in]
        errors[name] = [((a.double() - b).norm() / b.norm()).item() for a, b in zip(got, want, strict=True)]
    # Both ~bf16's epsilon (2**-8 = 0.0039) from float64; ours no worse than autograd's float32-softmax chain.
    for ours, chain in zip(errors["ours"], errors["chain"], strict=True):
        assert ours < 0.02 and ours < 1.2 * chain


def test_a_cpu_training_step_with_dropout_learns_and_repeats_under_a_seed():
    config = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=64, dropout=0.1)
    x = torch.randint(0, 64, (4, 32))

    def losses() -> list[float]:
        torch.manual_seed(0)
        model = GPT(config).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        out = []
        for _ in range(5):
            loss_sum, count = model.loss_sum(x[:, :-1], x[:, 1:], 64)
            (loss_sum / count).backward()
            opt.step()
            opt.zero_grad()
            out.append((loss_sum / count).item())
        return out

    first = losses()
    assert first == losses()  # masks from the seeded default generator
    assert first[-1] < first[0] - 0.5


def test_row_blocks_keep_only_the_weights_and_masks_of_the_keys_each_row_sees():
    def kept_elements(blocks):
        sizes = []

        def pack(t):
            sizes.append(t.numel())
            return t

        q, k, v = (torch.randn(2, 3, 256, 8, requires_grad=True) for _ in range(3))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            attention_with_dropout(q, k, v, 0.1, blocks)
        return sum(sizes) - 3 * q.numel()  # less the scaled q, k and v, kept by both

    square = 2 * 3 * 256 * 256
    assert kept_elements(1) == 2 * square  # weights and mask over the whole T x T square
    assert kept_elements(None) == 2 * square * (1 + 2 + 3 + 4) // 16  # 4 row blocks: the causal staircase only
