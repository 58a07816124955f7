"""LoRA adapters out for PEFT: the directory PEFT loads onto transformers' GPT-2 computes what our model does."""

from __future__ import annotations

import pytest
import torch

from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.model.lora import apply_lora
from lit_gpt5.weights.peft import save_peft_adapter
from tests.model.test_lora import TARGET_SETS, randomize_adapters


@TARGET_SETS
def test_peft_round_trip_gives_the_same_logits(tmp_path, targets):
    peft = pytest.importorskip("peft", reason="peft is not installed (pip install '.[dev]' installs it)")
    transformers = pytest.importorskip("transformers")
    from lit_gpt5.weights.hf import save_hf

    cfg = GPTConfig(block_size=64, n_layer=2, n_head=2, n_embd=32)  # GPT-2's vocabulary: HF's tokenizer files
    torch.manual_seed(0)
    base = GPT(cfg)
    save_hf(base, tmp_path / "base")
    model = GPT(cfg)
    model.load_state_dict(base.state_dict())
    apply_lora(model, r=4, alpha=8, targets=targets)
    randomize_adapters(model)
    save_peft_adapter(model, tmp_path / "adapter", base_model_name_or_path=str(tmp_path / "base"))
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "base")
    hf = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    x = torch.randint(0, 50257, (2, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        theirs = hf(input_ids=x).logits
    torch.testing.assert_close(theirs, model.eval()(x), rtol=1e-4, atol=1e-4)
