"""The measured matmul peak and the start-up line's estimate of a run's length."""

import json

import pytest
import torch

from lit_gpt5.training.peak import ESTIMATE_ABOVE_FLOPS, compute_dtype, matmul_peak, measure_matmul, run_length_note


def test_a_measured_peak_is_a_plausible_rate_and_cached_per_machine_and_shape(tmp_path):
    cache = tmp_path / "peak.json"
    cpu = torch.device("cpu")
    peak = matmul_peak(cpu, torch.float32, (256, 64, 256), cache)
    assert 1e8 < peak < 1e14  # FLOP/s: above 0.1 GFLOP/s, below 100 TFLOP/s on any CPU
    (key,) = json.loads(cache.read_text())
    assert "float32" in key and "256x64x256" in key and "threads" in key
    cache.write_text(json.dumps({key: 123.0}))  # a cached figure is taken as it is: no second measurement
    assert matmul_peak(cpu, torch.float32, (256, 64, 256), cache) == 123.0
    cache.write_text("{not json")  # a damaged cache is measured again and rewritten
    assert matmul_peak(cpu, torch.float32, (256, 64, 256), cache) != 123.0 and json.loads(cache.read_text())


def test_measure_matmul_counts_two_flops_per_multiply_add():
    fast = measure_matmul(128, 128, 128, torch.float32, torch.device("cpu"))
    assert fast > 0 and measure_matmul(1, 1, 1, torch.float32, torch.device("cpu")) < fast


@pytest.mark.parametrize("precision, dtype", [("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16),
                                              ("32-true", torch.float32), ("64-true", torch.float32)])  # fmt: skip
def test_compute_dtype(precision, dtype):
    assert compute_dtype(precision) == dtype


def test_run_length_note_says_steps_time_and_the_measured_speed_and_skips_small_runs(monkeypatch, tmp_path):
    import lightning as L

    from lit_gpt5.training.module import GPTLitModule

    monkeypatch.setenv("LIT_GPT5_CACHE", str(tmp_path))
    module = GPTLitModule(model_name="gpt-nano", n_layer=1, dropout=0.1, loss_chunk_size=16)
    trainer = L.Trainer(accelerator="cpu", precision="32-true", logger=False)
    flops_per_step = module.model.flops_per_token(32, training=True) * 64
    small = int(ESTIMATE_ABOVE_FLOPS // flops_per_step) - 1
    assert run_length_note(module, trainer, 64, 32, small) is None  # minutes at most anywhere: not measured
    assert not (tmp_path / "matmul-peak.json").exists()
    big = 100 * small
    weights = {name: p.clone() for name, p in module.model.state_dict().items()}
    rng = torch.get_rng_state()
    note = run_length_note(module, trainer, 64, 32, big, micro_batch=2)
    assert note.startswith(f"{big} steps: roughly ") and "GFLOP/s" in note and "float32 matmuls" in note, note
    assert "timed in parts: 1 blocks" in note, note
    assert (tmp_path / "matmul-peak.json").exists()
    # Timing the step's parts changes neither the model nor the run's random stream (its dropout masks)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(p, weights[name]) for name, p in module.model.state_dict().items())
    assert all(p.grad is None for p in module.model.parameters())
    (key,) = json.loads((tmp_path / "step-parts.json").read_text())
    assert "2x32" in key and "chunk=16" in key and "dropout=0.1" in key


def test_a_cpu_runs_length_adds_up_its_timed_parts(monkeypatch, tmp_path):
    # Cached parts are taken as they are: 4 blocks of 0.5 s, a loss of 0.1 s a call plus 0.01 s for each of a
    # micro-batch's 64 positions, an optimizer step of 1e-6 s a parameter; two micro-batches a step.
    import lightning as L

    from lit_gpt5.training.module import GPTLitModule
    from lit_gpt5.training.peak import step_key

    monkeypatch.setenv("LIT_GPT5_CACHE", str(tmp_path))
    module = GPTLitModule(model_name="gpt-nano", n_layer=4, loss_chunk_size=16)
    trainer = L.Trainer(accelerator="cpu", precision="32-true", logger=False)
    parts = {"block": 0.5, "loss_fixed": 0.1, "loss_per_position": 0.01, "optimizer_per_parameter": 1e-6}
    key = step_key(module, "32-true", 2, 32)
    (tmp_path / "step-parts.json").write_text(json.dumps({key: parts}))
    params = sum(p.numel() for p in module.model.parameters())
    step = 2 * (4 * 0.5 + 0.1 + 64 * 0.01) + 1e-6 * params
    steps = 10**6
    note = run_length_note(module, trainer, 128, 32, steps, micro_batch=2)
    assert f"roughly {step * steps / 3600:.1f} h here" in note, note
    assert f"4 blocks {2 * 4 * 0.5:.2f} s, loss {2 * 0.74:.2f} s, optimizer {1e-6 * params:.2f} s" in note, note
    (tmp_path / "step-parts.json").write_text(json.dumps({key: {"block": "fast"}}))  # damaged: measured again
    assert "roughly" in run_length_note(module, trainer, 128, 32, steps, micro_batch=2)
    measured = json.loads((tmp_path / "step-parts.json").read_text())[key]
    assert measured["block"] > 0 and measured["loss_per_position"] >= 0 and measured["optimizer_per_parameter"] > 0


def test_the_throughput_monitor_knows_a_cpus_peak_and_logs_mfu(monkeypatch, tmp_path, book_path):
    from lit_gpt5.data import GutenbergDataModule
    from lit_gpt5.training.callbacks import TokenThroughput
    from lit_gpt5.training.module import GPTLitModule
    from tests.helpers import quiet_trainer

    monkeypatch.setenv("LIT_GPT5_CACHE", str(tmp_path))
    monitor = TokenThroughput(window_size=2)
    trainer = quiet_trainer(tmp_path, max_steps=4, callbacks=[monitor], log_every_n_steps=1, precision="32-true")
    module = GPTLitModule(model_name="gpt-nano", n_layer=1, n_embd=32, n_head=2)
    trainer.fit(module, GutenbergDataModule(text_path=str(book_path), block_size=16, batch_size=2))
    assert monitor.available_flops and monitor.available_flops > 1e8  # measured: Lightning's table has no CPU
    assert 0 < trainer.logged_metrics["train/device/mfu"] < 10


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_the_step_is_timed_in_parts_for_lora_and_every_precision(monkeypatch, tmp_path, precision):
    # LoRA's frozen weights held in bf16 beside float32 adapters, a bf16-mixed run's float32 residual stream under
    # autocast, a bf16-true model: each part runs as training runs it.
    import lightning as L

    from lit_gpt5.model.lora import hold_frozen_in
    from lit_gpt5.training.module import GPTLitModule

    monkeypatch.setenv("LIT_GPT5_CACHE", str(tmp_path))
    module = GPTLitModule(model_name="gpt-nano", n_layer=2, lora_r=4)
    if precision == "bf16-true":
        module.model.to(torch.bfloat16)
    else:
        hold_frozen_in(module.model, precision)
    trainer = L.Trainer(accelerator="cpu", precision=precision, logger=False)
    note = run_length_note(module, trainer, 64, 32, 10**9, micro_batch=2)
    assert "timed in parts: 2 blocks" in note and "could not be timed" not in note, note


def test_a_step_that_cannot_be_timed_falls_back_to_the_matmul_estimate_and_says_why(monkeypatch, tmp_path):
    import lightning as L

    import lit_gpt5.training.peak as peak
    from lit_gpt5.training.module import GPTLitModule

    def broken(*args):
        raise RuntimeError("no block to time")

    monkeypatch.setenv("LIT_GPT5_CACHE", str(tmp_path))
    monkeypatch.setattr(peak, "measure_step_parts", broken)
    module = GPTLitModule(model_name="gpt-nano", n_layer=1)
    trainer = L.Trainer(accelerator="cpu", precision="32-true", logger=False)
    note = run_length_note(module, trainer, 64, 32, 10**9, micro_batch=2)
    assert "a whole step at about 70% of that" in note, note
    assert note.endswith("the step's parts could not be timed here (RuntimeError: no block to time))"), note
