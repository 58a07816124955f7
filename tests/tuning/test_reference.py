"""The reference model of preference tuning, in its three forms: a frozen copy, the policy without its LoRA adapters,
and log-probabilities precomputed once (saved and restored with the run state)."""

from __future__ import annotations

import pytest
import torch

from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.model.lora import apply_lora
from lit_gpt5.resume.state import RunState
from lit_gpt5.tuning.reference import BaseView, Reference
from lit_gpt5.weights.checkpoints import save_checkpoint

CFG = GPTConfig.from_name("gpt-nano", n_layer=1, block_size=32)


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    model = GPT(CFG)
    save_checkpoint(model, tmp_path / "ref.ckpt")
    return model, tmp_path / "ref.ckpt"


def test_a_frozen_copy_is_the_saved_model_and_never_trains(weights):
    saved, path = weights
    policy = GPT(CFG)
    reference = Reference(policy, str(path))
    assert reference.model is not policy and not reference.model.training
    assert all(not p.requires_grad for p in reference.model.parameters())
    x = torch.randint(0, CFG.vocab_size, (2, 8))
    torch.testing.assert_close(reference.model_on(torch.device("cpu"))(x), saved.eval()(x))


def test_with_lora_the_reference_is_the_policy_without_its_adapters_and_no_copy():
    torch.manual_seed(0)
    base = GPT(CFG).eval()
    policy = GPT(CFG).eval()
    policy.load_state_dict(base.state_dict())
    apply_lora(policy, r=2)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if name.endswith("lora_B"):
                p.normal_()
    reference = Reference(policy, path=None, lora=True)
    assert isinstance(reference.model, BaseView) and reference.model.model is policy
    x = torch.randint(0, CFG.vocab_size, (2, 8))
    assert torch.equal(reference.model(x), base(x))  # the adapters are off for the call...
    assert not torch.allclose(policy(x), base(x))  # ...and only for it


def test_precomputed_log_probabilities_replace_the_model_and_ride_in_the_run_state(weights):
    _, path = weights
    reference = Reference(GPT(CFG), str(path), keep_model=False)
    assert reference.model is None and not reference.precomputed
    tables = {"train": torch.tensor([[-1.0, -2.0], [-3.0, -4.0]]), "val": torch.tensor([[-5.0, -6.0]])}
    reference.use_precomputed(tables)
    assert torch.equal(reference.pair_logps("train", torch.tensor([1, 0])), torch.tensor([-3.0, -1.0, -4.0, -2.0]))
    state = RunState()
    state.add(reference)
    assert reference.state_dict() == {"reference_logps": tables}
    restored = Reference(GPT(CFG), str(path), keep_model=False)
    restored.load_state_dict(reference.state_dict())
    assert restored.precomputed and torch.equal(restored.logps["val"], tables["val"])
    with pytest.raises(RuntimeError, match="only its precomputed log-probabilities"):
        restored.model_on(torch.device("cpu"))
