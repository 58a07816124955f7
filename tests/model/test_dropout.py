"""Cheap CPU dropout masks: nn.Dropout's distribution and gradient, the attention path equal to SDPA's."""

import pytest
import torch
import torch.nn.functional as F

from lit_gpt5.model.dropout import LANE_BITS, Dropout, attention_with_dropout, dropout, keep_mask
from lit_gpt5.model.gpt import GPT, GPTConfig


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


def test_attention_without_its_dropout_is_sdpas_causal_attention(monkeypatch):
    import lit_gpt5.model.dropout as module

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 16, 8) for _ in range(3))
    monkeypatch.setattr(module, "dropout", lambda x, p, training: x)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(attention_with_dropout(q, k, v, 0.1), expected, atol=1e-6)


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
