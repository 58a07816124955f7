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
