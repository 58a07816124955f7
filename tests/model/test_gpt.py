import pytest
import torch

from lit_gpt5.errors import UserError
from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.model.loss import cross_entropy_sum, mean_loss
from lit_gpt5.model.tokenizer import get_tokenizer

TINY = GPTConfig(block_size=32, vocab_size=97, n_layer=2, n_head=2, n_embd=16)


@pytest.mark.parametrize(
    "name,params",
    [
        ("model5", 124_439_808),
        ("gpt2", 124_439_808),
        ("gpt2-medium", 354_823_168),
        ("gpt2-large", 774_030_080),
        ("gpt2-xl", 1_557_611_200),
    ],
)
def test_gpt2_family_parameter_counts(name, params):
    with torch.device("meta"):
        model = GPT(GPTConfig.from_name(name))
    assert model.num_params() == params
    assert model.lm_head.weight is model.transformer.wte.weight  # tied head


def test_from_name_overrides_and_errors():
    cfg = GPTConfig.from_name("gpt2", dropout=0.1, n_layer=None)
    assert (cfg.n_layer, cfg.n_embd, cfg.block_size, cfg.dropout) == (12, 768, 1024, 0.1)
    with pytest.raises(UserError, match="unknown model name 'gpt3'.*gpt2-xl"):
        GPTConfig.from_name("gpt3")
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=100, n_head=3)


def test_forward_shapes_and_length_limit():
    model = GPT(TINY)
    assert model(torch.randint(0, 97, (3, 32))).shape == (3, 32, 97)
    assert model(torch.randint(0, 97, (1, 1))).shape == (1, 1, 97)
    with pytest.raises(ValueError, match="longer than the model's 32 positions"):
        model(torch.randint(0, 97, (1, 33)))


def test_causal():
    torch.manual_seed(0)
    model = GPT(TINY).eval()
    idx = torch.randint(0, 97, (2, 20))
    changed = idx.clone()
    changed[:, 12:] = (changed[:, 12:] + 1) % 97
    torch.testing.assert_close(model(idx)[:, :12], model(changed)[:, :12])
    assert not torch.allclose(model(idx)[:, 12:], model(changed)[:, 12:])


def test_gpt2_init():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=8, n_head=4, n_embd=256, vocab_size=5000, block_size=64))
    assert model.transformer.wte.weight.std().item() == pytest.approx(0.02, rel=0.02)
    proj = model.transformer.h[0].attn.c_proj.weight.std().item()
    assert proj == pytest.approx(0.02 / (2 * 8) ** 0.5, rel=0.05)
    assert model.transformer.h[0].mlp.c_fc.bias.abs().sum() == 0


def test_activation_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = GPT(TINY)
    idx = torch.randint(0, 97, (2, 32))
    grads = []
    for checkpointing in (False, True):
        model.zero_grad()
        model.gradient_checkpointing = checkpointing
        model(idx).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_tiny_model_overfits_a_short_text():
    torch.manual_seed(0)
    tok = get_tokenizer()
    ids = torch.tensor(tok.encode("My father had a small estate in Nottinghamshire; I was the third of five sons."))
    model = GPT(GPTConfig(block_size=64, n_layer=2, n_head=2, n_embd=64))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x, y = ids[None, :-1], ids[None, 1:]
    for _ in range(150):
        loss = mean_loss(*cross_entropy_sum(model(x), y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert torch.equal(model(x).argmax(-1), y)  # recites the sentence


def test_loss_sum_and_count():
    logits = torch.randn(2, 5, 11)
    targets = torch.randint(0, 11, (2, 5))
    total, count = cross_entropy_sum(logits, targets)
    torch.testing.assert_close(total / count, torch.nn.functional.cross_entropy(logits.view(-1, 11), targets.view(-1)))
    targets[0] = -100
    total, count = cross_entropy_sum(logits, targets)
    assert count == 5
    torch.testing.assert_close(total, torch.nn.functional.cross_entropy(logits[1], targets[1], reduction="sum"))
    # Nothing supervised: zero loss and zero gradient, never NaN.
    logits.requires_grad_(True)
    total, count = cross_entropy_sum(logits, torch.full((2, 5), -100))
    loss = mean_loss(total, count)
    loss.backward()
    assert loss.item() == 0.0 and count == 0 and torch.all(logits.grad == 0)
