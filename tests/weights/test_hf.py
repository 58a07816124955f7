import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from safetensors.torch import load_file, save_file  # noqa: E402

from lit_gpt5.commands.convert import main  # noqa: E402
from lit_gpt5.errors import UserError  # noqa: E402
from lit_gpt5.model.gpt import GPT, GPTConfig  # noqa: E402
from lit_gpt5.model.tokenizer import get_tokenizer  # noqa: E402
from lit_gpt5.training.module import GPTLitModule  # noqa: E402
from lit_gpt5.weights.checkpoints import load_checkpoint  # noqa: E402
from lit_gpt5.weights.hf import load_hf, save_hf  # noqa: E402
from tests.conftest import hf_model  # noqa: E402


def max_diff(a, b):
    return (a - b).abs().max().item()


def save_like_the_original_gpt2_bin(model, path):
    """The layout of the hub's original gpt2 pytorch_model.bin: no 'transformer.' prefix, no lm_head, and the
    causal-mask buffers saved as if they were weights."""
    (path / "model.safetensors").unlink()
    n = model.config.n_positions
    state = {k.removeprefix("transformer."): v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    for i in range(model.config.n_layer):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, path / "pytorch_model.bin")


@pytest.mark.parametrize("layout", ["safetensors", "original-bin"])
def test_load_hf_matches_transformers_logits(tmp_path, layout):
    reference = hf_model(vocab_size=1000, n_positions=40, n_embd=64, n_layer=2, n_head=8, seed=1)
    reference.save_pretrained(tmp_path)
    if layout == "original-bin":
        save_like_the_original_gpt2_bin(reference, tmp_path)
    ours = load_hf(tmp_path).eval()
    assert ours.config.block_size == 40 and ours.config.vocab_size == 1000
    torch.manual_seed(0)
    idx = torch.randint(0, 1000, (4, 40))
    with torch.no_grad():
        assert max_diff(ours(idx), reference(idx).logits) <= 1e-4


def test_export_round_trip_is_exact_and_transformers_loads_it(tmp_path):
    torch.manual_seed(3)
    ours = GPT(GPTConfig(block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()
    save_hf(ours, tmp_path)
    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt"} <= {p.name for p in tmp_path.iterdir()}
    back = load_hf(tmp_path)
    for (name, a), (_, b) in zip(ours.state_dict().items(), back.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    hf, info = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()  # tied, as in GPT-2
    idx = torch.randint(0, 50257, (3, 32))
    with torch.no_grad():
        assert max_diff(ours(idx), hf.eval()(idx).logits) <= 1e-4


def test_exported_tokenizer_encodes_like_ours(tmp_path, book_text):
    save_hf(GPT(GPTConfig(block_size=16, n_layer=1, n_head=1, n_embd=8)), tmp_path)
    hf_tok = transformers.GPT2TokenizerFast.from_pretrained(tmp_path)
    ours = get_tokenizer()
    for text in ["hello world", "naïve café — “quotes” 日本語 🐍", "It's 1234567  \n\n  x", book_text[:60_000]]:
        assert hf_tok.encode(text) == ours.encode_ordinary(text)
    assert hf_tok.eos_token_id == 50256
    assert hf_tok.decode(ours.encode("Lilliput and Blefuscu")) == "Lilliput and Blefuscu"


def test_checkpoint_round_trip_and_init_from(tmp_path, hf_dir):
    ckpt = tmp_path / "from-hf.ckpt"
    main(["from-hf", "--hf_dir", str(hf_dir), "--out", str(ckpt)])
    main(["to-hf", "--ckpt", str(ckpt), "--out", str(tmp_path / "back")])
    original = load_file(hf_dir / "model.safetensors")
    exported = load_file(tmp_path / "back" / "model.safetensors")
    for name, tensor in exported.items():
        assert torch.equal(tensor, original[name]), name
    from_hf = GPTLitModule(init_from=str(hf_dir))
    from_ckpt = GPTLitModule(init_from=str(ckpt), dropout=0.0)
    assert from_hf.config.n_layer == 3 and from_ckpt.config.dropout == 0.0
    for a, b in zip(from_hf.model.parameters(), from_ckpt.model.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(UserError, match="n_layer=3, but 12 was asked for"):
        GPTLitModule(init_from=str(hf_dir), n_layer=12)
    assert torch.equal(load_checkpoint(ckpt).transformer.wte.weight, from_hf.model.transformer.wte.weight)


def test_trained_lightning_checkpoint_converts(tmp_path):
    import lightning as L

    from lit_gpt5.data import TokenWindowDataModule

    module = GPTLitModule(model_name="gpt-nano", n_layer=1, warmup_steps=0)
    dm = TokenWindowDataModule(torch.randint(0, 50257, (4000,)), block_size=16, batch_size=2)
    trainer = L.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "trained.ckpt")
    main(["to-hf", "--ckpt", str(tmp_path / "trained.ckpt"), "--out", str(tmp_path / "hf")])
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    idx = torch.randint(0, 50257, (2, 16))
    with torch.no_grad():
        assert max_diff(module.model.eval()(idx), hf(idx).logits) <= 1e-4


def test_clear_errors(tmp_path, hf_dir):
    with pytest.raises(UserError, match="not a directory"):
        load_hf(tmp_path / "nope")
    with pytest.raises(UserError, match="no config.json"):
        load_hf(tmp_path)
    (tmp_path / "config.json").write_text((hf_dir / "config.json").read_text())
    with pytest.raises(UserError, match="no model.safetensors"):
        load_hf(tmp_path)
    weights = load_file(hf_dir / "model.safetensors")
    bad = dict(weights)
    bad["transformer.h.1.mlp.c_fc.weight"] = bad["transformer.h.1.mlp.c_fc.weight"][:, :10].contiguous()
    save_file(bad, tmp_path / "model.safetensors")
    with pytest.raises(UserError, match=r"'transformer.h.1.mlp.c_fc.weight' has shape \(48, 10\)"):
        load_hf(tmp_path)
    missing = {k: v for k, v in weights.items() if k != "transformer.ln_f.bias"}
    save_file(missing, tmp_path / "model.safetensors")
    with pytest.raises(UserError, match="miss 1 tensors, e.g. 'transformer.ln_f.bias'"):
        load_hf(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(UserError, match="cannot read the weights"):
        load_hf(tmp_path)
    config = json.loads((hf_dir / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(UserError, match="only GPT-2"):
        load_hf(tmp_path)
    with pytest.raises(UserError, match="always has biases"):
        save_hf(GPT(GPTConfig(block_size=8, n_layer=1, n_head=1, n_embd=8, bias=False)), tmp_path / "x")
