import pytest
import torch

from lit_gpt5.commands.generate import main as generate_main
from lit_gpt5.model.generate import generate, generate_batch, sample_next
from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.model.tokenizer import get_tokenizer
from lit_gpt5.weights.hf import load_hf

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


def test_greedy_generation_matches_transformers(hf_dir):
    transformers = pytest.importorskip("transformers")
    reference = transformers.GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    ours = load_hf(hf_dir)
    prompt = torch.tensor([get_tokenizer().encode("The Emperor of Lilliput")])
    expected = reference.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        do_sample=False,
        max_new_tokens=50,
        min_new_tokens=50,
        pad_token_id=50256,
    )
    for use_cache in (True, False):
        assert generate(ours, prompt, 50, temperature=0, use_cache=use_cache).tolist() == expected.tolist()


def test_batch_of_prompts_matches_transformers_left_padding(hf_dir):
    transformers = pytest.importorskip("transformers")
    reference = transformers.GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    ours = load_hf(hf_dir)
    tok = get_tokenizer()
    prompts = [tok.encode(t) for t in ["A", "My father had a small estate in", "The king of Brobdingnag"]]
    width = max(map(len, prompts))
    idx = torch.tensor([[50256] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    expected = reference.generate(
        idx, attention_mask=mask, do_sample=False, max_new_tokens=20, min_new_tokens=20, pad_token_id=50256
    )
    got = generate_batch(ours, prompts, 20, temperature=0)
    assert got == expected[:, width:].tolist()


def test_generate_command_streams_the_same_tokens(hf_dir, capsys):
    model = load_hf(hf_dir)
    tok = get_tokenizer()
    ids = torch.tensor([tok.encode("Gulliver")])
    expected = tok.decode(generate(model, ids, 25, temperature=0)[0].tolist())
    generate_main(["--ckpt", str(hf_dir), "--prompt", "Gulliver", "--temperature", "0", "--max_new_tokens", "25"])
    assert capsys.readouterr().out == expected + "\n"
