"""The memory estimator: exact parameter and model-state counts, and peaks within 10% of a tracked training step."""

import json

import pytest
import torch

from lit_gpt5.commands.memory import main
from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.training.memory_estimate import CONFIG_NAMES, estimate, n_params
from lit_gpt5.training.memory_tracking import tracked_peak

TINY = GPTConfig(block_size=128, n_layer=2, n_head=4, n_embd=64)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_parameter_counts_equal_the_real_models(name):
    with torch.device("meta"):
        model = GPT(GPTConfig.from_name(name))
    assert n_params(model.config) == model.num_params() == estimate(name, 64, 1).n_params
    no_bias = GPTConfig(block_size=64, n_layer=3, n_head=2, n_embd=32, bias=False)
    with torch.device("meta"):
        assert n_params(no_bias) == GPT(no_bias).num_params()


def states(**kwargs) -> tuple[int, int, int, int]:
    est = estimate("gpt2-large", 1024, 1, **kwargs)
    return est.params, est.grads, est.optimizer, est.n_params


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed", "32-true"])
def test_adamw_model_states_are_16_bytes_per_parameter(precision):
    params, grads, optimizer, n = states(precision=precision)
    assert (params, grads, optimizer) == (4 * n, 4 * n, 8 * n)
    assert params + grads + optimizer == 16 * n  # ~12.4 GB for GPT-2 Large


def test_sharded_and_other_precisions_follow_the_zero_paper():
    n = n_params(GPTConfig.from_name("gpt2-large"))
    assert states(precision="bf16-true")[:3] == (2 * n, 2 * n, 4 * n)
    # ZeRO-2 over 8: 16-bit parameters whole, gradients and the 12 bytes of fp32 master + moments sharded.
    assert states(strategy="deepspeed_stage_2", devices=8)[:3] == (2 * n, -(-2 * n // 8), -(-12 * n // 8))
    assert sum(states(strategy="deepspeed_stage_3", devices=8)[:3]) == pytest.approx(16 * n / 8, abs=3)
    assert sum(states(strategy="fsdp", devices=8)[:3]) == pytest.approx(16 * n / 8, abs=3)
    assert states(strategy="deepspeed_stage_2", devices=8, cpu_offload=True)[2] == 0
    assert states(strategy="fsdp", devices=8, cpu_offload=True)[:3] == (0, 0, 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(block_size=128, micro_batch_size=4, loss_chunk_size=0),
        dict(block_size=128, micro_batch_size=4),  # the defaults: training's chunked loss, in both
        dict(block_size=128, micro_batch_size=4, loss_chunk_size=64, activation_checkpointing=True),
        dict(block_size=64, micro_batch_size=8, loss_chunk_size=128),
        dict(block_size=128, micro_batch_size=4, loss_chunk_size=64, activation_checkpointing=True, fsdp_ranks=2),
        dict(block_size=128, micro_batch_size=4, lora_r=8),
        dict(block_size=128, micro_batch_size=4, lora_r=4, loss_chunk_size=0, activation_checkpointing=True),
        dict(block_size=128, micro_batch_size=4, lora_r=8, lora_targets=("c_attn", "c_proj", "c_fc", "wte")),
        dict(block_size=128, micro_batch_size=4, lora_r=8, lora_targets=("c_attn", "wte"), loss_chunk_size=0),
    ],
)
def test_estimate_within_ten_percent_of_the_tracked_step(kwargs):
    tracked = tracked_peak(TINY, **kwargs)
    assert not torch.distributed.is_initialized()  # the fake process group of an FSDP tracking is gone again
    ranks = kwargs.get("fsdp_ranks", 0)
    setting = {k: v for k, v in kwargs.items() if k != "fsdp_ranks"}
    sharding = dict(strategy="fsdp", devices=ranks) if ranks else {}
    assert abs(estimate(TINY, **setting, **sharding).peak / tracked - 1) < 0.10


def test_chunked_loss_peak_is_a_fraction_of_the_full_loss():
    full = estimate("gpt2-large", 1024, 8, loss_chunk_size=0)
    chunked = estimate("gpt2-large", 1024, 8)  # the default: the loss training uses
    assert full.logits > 12 * 8 * 1024 * 50257 - 1  # float32 log-softmax and two gradients of (B x T x V)
    assert chunked.logits < full.logits / 5


def test_defaults_are_the_training_defaults():
    from lit_gpt5.training.memory_estimate import DEFAULT_LOSS_CHUNK
    from lit_gpt5.training.module import GPTLitModule

    assert GPTLitModule(model_name="gpt-nano").hparams.loss_chunk_size == DEFAULT_LOSS_CHUNK
    assert estimate("gpt2", 256, 4) == estimate("gpt2", 256, 4, loss_chunk_size=GPTLitModule().hparams.loss_chunk_size)


def test_command_prints_a_table_json_and_what_makes_it_fit(capsys):
    main(["--model", "gpt2-large", "--block_size", "1024", "--micro_batch_size", "8", "--gpu_memory", "24GiB"])
    out = capsys.readouterr().out
    assert "chunked loss (512 positions)" in out  # says which loss it assumed: training's default
    assert "does NOT fit in 24.0 GiB" in out and "what makes it fit" in out and "activation checkpointing" in out
    main(["--model", "gpt2-large", "--block_size", "1024", "--micro_batch_size", "8", "--loss_chunk_size", "0"])
    assert "full-logits loss" in capsys.readouterr().out
    main(["--model", "gpt2-xl", "--strategy", "fsdp", "--devices", "8", "--gpu_memory", "80GB", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["n_params"] == 1_557_611_200 and report["fits"] is True and report["peak"] < 80e9


def test_bad_arguments_are_one_line(refused):
    refused(["memory", "--model", "gpt5"], r"unknown model name 'gpt5'")
    refused(["memory", "--gpu_memory", "lots"], r"--gpu_memory 'lots' is not a size")
    refused(
        ["memory", "--model", "gpt-nano", "--block_size", "4096"], r"block_size 4096 is longer than the model's 256"
    )
    refused(["memory", "--strategy", "zero9"], r"argument --strategy: invalid choice")
