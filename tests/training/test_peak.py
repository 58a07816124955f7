"""The measured matmul peak and the start-up line's estimate of a run's length."""

import json

import pytest
import torch

from lit_gpt5.model.gpt import GPT, GPTConfig
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


class _Run:
    """What ``run_length_note`` reads of a Lightning run: the module's model and the trainer's precision."""

    def __init__(self, model, precision="32-true"):
        self.model, self.precision = model, precision


def test_run_length_note_says_steps_time_and_the_measured_speed_and_skips_small_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("LIT_GPT5_CACHE", str(tmp_path))
    model = GPT(GPTConfig.from_name("gpt-nano", n_layer=1))
    run = _Run(model)
    flops_per_step = model.flops_per_token(32, training=True) * 64
    small = int(ESTIMATE_ABOVE_FLOPS // flops_per_step) - 1
    assert run_length_note(run, run, 64, 32, small) is None  # minutes at most anywhere: not measured
    assert not (tmp_path / "matmul-peak.json").exists()
    big = 100 * small
    note = run_length_note(run, run, 64, 32, big)
    assert note.startswith(f"{big} steps: roughly ") and "GFLOP/s" in note and "float32 matmuls" in note, note
    assert (tmp_path / "matmul-peak.json").exists()
