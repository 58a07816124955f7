"""LoRA: exact at zero, the same through the chunked loss, merged = unmerged, a PEFT round trip, adapters train."""

from __future__ import annotations

import pytest
import torch

from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.model.lora import (
    TARGETS,
    LoRAEmbedding,
    TiedLoRAHead,
    adapters_disabled,
    apply_lora,
    lora_layers,
    merge_lora,
)

CFG = GPTConfig(block_size=32, vocab_size=97, n_layer=2, n_head=2, n_embd=16)


def adapted(seed: int = 0, r: int = 4, randomize: bool = True, **kwargs) -> tuple[GPT, GPT]:
    """(base, adapted copy of it); the adapters' B made non-zero with ``randomize``."""
    torch.manual_seed(seed)
    base = GPT(CFG)
    model = GPT(CFG)
    model.load_state_dict(base.state_dict())
    apply_lora(model, r=r, alpha=8, **kwargs)
    if randomize:
        randomize_adapters(model)
    return base, model


def randomize_adapters(model: GPT) -> None:
    """Make every adapter change its layer: the factor that starts at zero (a linear layer's B, an embedding's A)
    drawn at random."""
    with torch.no_grad():
        for _, layer in lora_layers(model):
            (layer.lora_A if isinstance(layer, LoRAEmbedding) else layer.lora_B).normal_(0, 0.1)


WITH_EMBEDDING = ("c_attn", "c_proj", "c_fc", "wte")
TARGET_SETS = pytest.mark.parametrize("targets", [TARGETS, WITH_EMBEDDING], ids=["blocks", "blocks+wte"])


def tokens(n: int = 3, t: int = 12) -> torch.Tensor:
    return torch.randint(0, CFG.vocab_size, (n, t), generator=torch.Generator().manual_seed(1))


@TARGET_SETS
def test_zero_adapters_give_the_base_models_logits_exactly_and_only_adapters_train(targets):
    base, model = adapted(randomize=False, targets=targets)
    x = tokens()
    assert torch.equal(model(x), base(x))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".lora_A", ".lora_B")) for n in trainable)
    # c_attn, attn c_proj, c_fc, mlp c_proj: an A and a B each; the embedding's one pair serves the tied head too
    assert len(trainable) == 2 * 4 * CFG.n_layer + 2 * ("wte" in targets)
    base_names = {n for n in model.state_dict() if not n.endswith((".lora_A", ".lora_B"))}
    assert base_names == set(base.state_dict())  # the base parameters keep their names


def test_targets_choose_the_layers():
    _, model = adapted(targets=("c_attn",))
    assert [n.rsplit(".", 2)[-2:] for n, _ in lora_layers(model)] == [["attn", "c_attn"]] * CFG.n_layer


@TARGET_SETS
def test_chunked_loss_equals_full_loss_with_lora(targets):
    results = []
    for chunk in (0, 5):
        _, model = adapted(targets=targets)
        x, y = tokens(), tokens()
        y[0, :3] = -100
        total, count = model.loss_sum(x, y, chunk)
        (total / count).backward()
        results.append((total.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    for full, chunked in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(full, chunked, rtol=1e-4, atol=1e-6)


@TARGET_SETS
def test_merged_equals_unmerged_and_disabled_adapters_equal_the_base(targets):
    base, model = adapted(targets=targets)
    x = tokens()
    with adapters_disabled(model):
        assert torch.equal(model(x), base(x))
    unmerged = model(x)
    assert not torch.allclose(unmerged, base(x))
    merge_lora(model)
    assert not list(lora_layers(model)) and type(model.lm_head) is torch.nn.Linear
    assert model.lm_head.weight is model.transformer.wte.weight  # still GPT-2: the head tied to the embedding
    torch.testing.assert_close(model(x), unmerged, rtol=1e-5, atol=1e-5)


def test_an_embedding_adapter_changes_the_tied_head_too():
    base, model = adapted(targets=("wte",))
    assert isinstance(model.transformer.wte, LoRAEmbedding) and isinstance(model.lm_head, TiedLoRAHead)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert not [n for n in model.state_dict() if n.startswith("lm_head.lora")]  # one adapter, saved once
    h = torch.randn(2, 5, CFG.n_embd)
    delta = model.transformer.wte.delta()
    torch.testing.assert_close(model.lm_head(h), h @ (base.lm_head.weight + delta).t(), rtol=1e-5, atol=1e-5)
    idx = tokens()
    torch.testing.assert_close(model.transformer.wte(idx), (base.transformer.wte.weight + delta)[idx])


@TARGET_SETS
def test_lit_module_trains_adapters_only_and_its_checkpoint_loads_merged(tmp_path, targets):
    import lightning as L

    from lit_gpt5.data import TokenWindowDataModule
    from lit_gpt5.training.module import GPTLitModule
    from lit_gpt5.weights.checkpoints import load_checkpoint

    torch.manual_seed(0)
    module = GPTLitModule(model_name="gpt-nano", n_layer=1, lora_r=4, learning_rate=1e-2, warmup_steps=0,
                          lora_targets=list(targets))  # fmt: skip
    frozen = {n: p.detach().clone() for n, p in module.model.named_parameters() if not p.requires_grad}
    data = TokenWindowDataModule(torch.randint(0, 50257, (3000,)), block_size=16, batch_size=2)
    trainer = L.Trainer(max_steps=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, default_root_dir=tmp_path, precision="32-true")  # fmt: skip
    trainer.fit(module, datamodule=data)
    optimizer_params = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimizer_params == {id(p) for p in module.parameters() if p.requires_grad}
    assert all(torch.equal(p, frozen[n]) for n, p in module.model.named_parameters() if not p.requires_grad)
    assert all(layer.delta().abs().sum() > 0 for _, layer in lora_layers(module.model))  # every adapter moved
    trainer.save_checkpoint(tmp_path / "lora.ckpt")
    unmerged = load_checkpoint(tmp_path / "lora.ckpt", merge=False)
    assert {n for n, _ in lora_layers(unmerged)} == {n for n, _ in lora_layers(module.model)}
    merged = load_checkpoint(tmp_path / "lora.ckpt")
    x = torch.randint(0, 50257, (2, 16))
    torch.testing.assert_close(merged(x), module.model.eval()(x), rtol=1e-5, atol=1e-5)


def test_bf16_base_weights_compute_what_autocast_computes():
    from lit_gpt5.model.lora import hold_frozen_in

    _, model = adapted()
    x = tokens()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        before = model(x)
    hold_frozen_in(model, "bf16-mixed")
    assert all(layer.weight.dtype == torch.bfloat16 for _, layer in lora_layers(model))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        after = model(x)
    assert torch.equal(before, after)
    # Outside autocast (the text sampler, generate) the 16-bit weights compute in float32, as upcast by hand.
    outside = model(x)
    for _, layer in lora_layers(model):
        layer.weight.data, layer.bias.data = layer.weight.data.float(), layer.bias.data.float()
    assert outside.dtype == torch.float32 and torch.equal(outside, model(x))


@pytest.mark.slow  # bf16 on a CPU without native bf16 is emulated, ~10x slower than float32
def test_a_lora_fit_in_bf16_samples_text_after_its_validations(book_path, tmp_path, capsys):
    # The text sampler generates outside autocast, from frozen weights held in bf16: this once failed with
    # "mat1 and mat2 must have the same dtype" after the first validation of configs/sft-gulliver.yaml + LoRA.
    from lit_gpt5.cli import main

    main(["fit", "--model.model_name=gpt-nano", "--model.n_layer=1", "--model.n_embd=16", "--model.n_head=2",
          "--model.lora_r=2", f"--data.text_path={book_path}", "--data.block_size=16", "--data.batch_size=4",
          "--data.val_batch_size=512", "--trainer.max_steps=2", "--trainer.val_check_interval=2",
          "--trainer.accelerator=cpu", "--trainer.precision=bf16-mixed", "--trainer.enable_progress_bar=false",
          f"--trainer.default_root_dir={tmp_path}", "--sampler.max_new_tokens=4"])  # fmt: skip
    assert capsys.readouterr().out.count("----- sample at step") == 2  # before training and after step 2
