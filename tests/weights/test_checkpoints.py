import pytest
import torch

from lit_gpt5.errors import UserError
from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.training.module import GPTLitModule
from lit_gpt5.weights.checkpoints import load_checkpoint, save_checkpoint


def test_save_checkpoint_loads_in_lightning(tmp_path):
    model = GPT(GPTConfig.from_name("gpt-nano"))
    save_checkpoint(model, tmp_path / "m.ckpt")
    module = GPTLitModule.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    assert torch.equal(module.model.transformer.wte.weight, model.transformer.wte.weight)


def test_not_a_checkpoint_is_named(tmp_path):
    (tmp_path / "not.ckpt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "not.ckpt")


def test_a_lora_checkpoint_loads_merged_and_trainable(tmp_path):
    """Starting a run from a LoRA run's checkpoint (DPO after LoRA SFT) trains the merged model: every weight
    requires a gradient again, and the merged weights compute what the adapted model did."""
    from dataclasses import asdict

    from lit_gpt5.model.lora import apply_lora, lora_settings

    torch.manual_seed(0)
    model = apply_lora(GPT(GPTConfig.from_name("gpt-nano", n_layer=1)), r=2, alpha=4.0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.normal_()  # a trained adapter, not the zero one it starts as
    ckpt = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "lit_gpt5": {"model_config": asdict(model.config), "lora": lora_settings(model)}}  # fmt: skip
    torch.save(ckpt, tmp_path / "lora.ckpt")
    merged = load_checkpoint(tmp_path / "lora.ckpt")
    assert all(p.requires_grad for p in merged.parameters())
    x = torch.randint(0, 50257, (2, 8))
    torch.testing.assert_close(merged.eval()(x), model.eval()(x), rtol=1e-4, atol=1e-4)
    adapted = load_checkpoint(tmp_path / "lora.ckpt", merge=False)  # as trained: only the adapters train
    assert {n for n, p in adapted.named_parameters() if p.requires_grad} == {
        n for n, p in model.named_parameters() if p.requires_grad
    }
