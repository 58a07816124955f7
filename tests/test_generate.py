import torch

from lit_gpt5.generate import generate, sample_next
from lit_gpt5.model import GPT, GPTConfig

TINY = GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=16)


def test_greedy_is_argmax():
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 0.0, -1.0]])
    assert sample_next(logits, temperature=0).tolist() == [1, 0]


def test_top_k_and_top_p_restrict_the_support():
    gen = torch.Generator().manual_seed(0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    top_k = sample_next(logits, top_k=2, generator=gen)
    assert set(top_k.tolist()) == {0, 1}
    top_p = sample_next(logits, top_p=0.7, generator=gen)
    assert set(top_p.tolist()) == {0, 1}  # 0.5 < 0.7, 0.5 + 0.3 >= 0.7: the third token is cut
    assert set(sample_next(logits, top_p=0.4, generator=gen).tolist()) == {0}
    free = sample_next(logits, generator=gen)
    assert set(free.tolist()) == {0, 1, 2, 3}
    assert abs((free == 0).float().mean().item() - 0.5) < 0.05


def test_seeded_generation_is_reproducible_and_stops():
    torch.manual_seed(0)
    model = GPT(TINY)
    idx = torch.tensor([[1, 2, 3], [4, 5, 6]])
    a = generate(model, idx, 30, temperature=1.0, seed=11)
    b = generate(model, idx, 30, temperature=1.0, seed=11)
    assert a.shape == (2, 33) and torch.equal(a, b)
    assert torch.equal(a[:, :3], idx)
    # Longer than the model's 16 positions: the context slides.
    assert generate(model, idx, 20, temperature=0).shape == (2, 23)
    stop = int(generate(model, idx[:1], 1, temperature=0)[0, -1])
    out = generate(model, idx[:1], 10, temperature=0, stop_token=stop)
    assert out.shape == (1, 4) and out[0, -1] == stop
    assert model.training  # restored
