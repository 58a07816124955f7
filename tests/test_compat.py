"""Every library internal the package uses, pinned by name: an upgrade that moves one fails here, saying which.

``lit_gpt5.compat`` is the only module allowed to reach past a library's public API; the last test checks that the
rest of the package does not.
"""

from __future__ import annotations

import ast
import csv
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from lit_gpt5 import compat
from tests.helpers import quiet_trainer

PACKAGE = Path(__file__).resolve().parents[1] / "lit_gpt5"


class Tiny(L.LightningModule):
    """Logs ``probe`` in every validation step; counts what reaches the loggers."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).sum()

    def validation_step(self, batch, batch_idx):
        self.log("probe", 1.0)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            compat.log_during_sanity_check(self.trainer, {"sanity": 2.0})

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(16, 2), batch_size=2)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(4, 2), batch_size=2)


def fit_tiny(tmp_path, **kwargs) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=3,
        logger=CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )
    trainer.fit(Tiny())
    return trainer


def test_lightning_cli_has_the_private_hook_we_turn_off():
    from lightning.pytorch.cli import LightningCLI

    from lit_gpt5.cli import GPT5CLI

    assert callable(getattr(LightningCLI, "_parse_ckpt_path", None)), "LightningCLI._parse_ckpt_path moved"
    assert GPT5CLI._parse_ckpt_path is compat.CheckpointArgumentsKept._parse_ckpt_path


def test_completed_micro_batches_counts_the_fit_loop(tmp_path):
    trainer = fit_tiny(tmp_path, limit_val_batches=0, accumulate_grad_batches=2)
    assert compat.completed_micro_batches(trainer) == 6  # 3 optimizer steps of 2 micro-batches


class StepSizes(Tiny):
    """Tiny, recording how many micro-batches each optimizer step accumulated."""

    def __init__(self) -> None:
        super().__init__()
        self.micro_batches_per_step: dict[int, int] = {}

    def on_train_batch_start(self, batch, batch_idx) -> None:
        step = self.trainer.global_step
        self.micro_batches_per_step[step] = self.micro_batches_per_step.get(step, 0) + 1

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.aligned = compat.align_accumulation_window(checkpoint, self.trainer.accumulate_grad_batches)


def test_align_accumulation_window_makes_the_first_resumed_step_whole(tmp_path):
    trainer = fit_tiny(tmp_path, limit_val_batches=0)  # 3 steps of 1 micro-batch
    trainer.save_checkpoint(tmp_path / "three.ckpt")
    model = StepSizes()
    resumed = L.Trainer(max_steps=5, accumulate_grad_batches=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    resumed.fit(model, ckpt_path=tmp_path / "three.ckpt")
    # Without the alignment Lightning would step after one micro-batch (its count 3 + 1 is a multiple of 2).
    assert model.aligned
    assert model.micro_batches_per_step == {3: 2, 4: 2}
    assert compat.completed_micro_batches(resumed) == 6


def test_align_accumulation_window_counts_the_batch_a_periodic_save_is_written_in(tmp_path):
    # ModelCheckpoint saves in on_train_batch_end, before Lightning counts that micro-batch as completed (3 of 4).
    saver = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1, filename="{step}")
    quiet_trainer(tmp_path, max_steps=2, accumulate_grad_batches=2, callbacks=[saver]).fit(Tiny())
    checkpoint = torch.load(tmp_path / "step=2.ckpt", weights_only=True)
    counters = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert (counters["processed"], counters["completed"]) == (4, 3)
    assert not compat.align_accumulation_window(checkpoint, 2)  # 4 micro-batches: already a whole window
    assert compat.align_accumulation_window(checkpoint, 3)  # 4 is one past a window of 3: one counted back
    assert (counters["processed"], counters["completed"]) == (3, 2)
    model = StepSizes()
    resumed = quiet_trainer(tmp_path, max_steps=4, accumulate_grad_batches=2, enable_checkpointing=False)
    resumed.fit(model, ckpt_path=tmp_path / "step=2.ckpt")
    assert not model.aligned and model.micro_batches_per_step == {2: 2, 3: 2}


class LogsSteps(Tiny):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("train/loss", loss)
        return loss


def logged_steps(log_dir) -> list[int]:
    with open(Path(log_dir) / "metrics.csv") as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")]


@pytest.mark.parametrize("fixed", [False, True])
def test_a_checkpoint_saved_after_the_last_validation_resumes_the_logger_step_one_ahead(tmp_path, fixed):
    settings = dict(val_check_interval=3, check_val_every_n_epoch=None, log_every_n_steps=1, enable_checkpointing=False)
    settings["limit_val_batches"] = 1
    whole = quiet_trainer(tmp_path / "whole", max_steps=5, **settings)
    whole.fit(LogsSteps())
    first = quiet_trainer(tmp_path / "first", max_steps=3, **settings)
    first.fit(LogsSteps())  # validates after step 3, its last: a save now comes after Lightning's count went up
    first.save_checkpoint(tmp_path / "end.ckpt")
    checkpoint = torch.load(tmp_path / "end.ckpt", weights_only=True)
    if fixed:
        compat.end_of_run_logger_step(checkpoint)
    torch.save(checkpoint, tmp_path / "end.ckpt")
    rest = quiet_trainer(tmp_path / "rest", max_steps=5, **settings)
    rest.fit(LogsSteps(), ckpt_path=tmp_path / "end.ckpt")
    expected = logged_steps(whole.logger.log_dir)[3:]
    assert (logged_steps(rest.logger.log_dir) == expected) == fixed


def test_lightning_drops_what_is_logged_in_the_sanity_check_and_the_work_around_records_it(tmp_path):
    trainer = fit_tiny(
        tmp_path, limit_val_batches=2, num_sanity_val_steps=2, val_check_interval=100, check_val_every_n_epoch=None
    )
    assert "probe" not in trainer.callback_metrics  # no validation after the sanity check: only it logged "probe"
    logged = (Path(trainer.logger.log_dir) / "metrics.csv").read_text()
    assert "sanity" in logged.splitlines()[0] and "probe" not in logged.splitlines()[0]


def test_strategy_kinds_by_class():
    from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy, SingleDeviceStrategy

    deepspeed = DeepSpeedStrategy.__new__(DeepSpeedStrategy)  # DeepSpeed itself need not be installed
    deepspeed.config = {"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}}
    assert compat.strategy_kind(deepspeed) == "deepspeed"
    assert compat.deepspeed_zero(deepspeed) == (3, True)
    assert compat.strategy_kind(FSDPStrategy(cpu_offload=True)) == "fsdp"
    assert compat.fsdp_offloads_parameters(FSDPStrategy(cpu_offload=True))
    assert not compat.fsdp_offloads_parameters(FSDPStrategy())
    assert compat.strategy_kind(DDPStrategy()) == "ddp"
    assert compat.strategy_kind(SingleDeviceStrategy("cpu")) == "single"


def test_scheduler_state_reports_the_learning_rate_written_into_it():
    def scheduler():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    state = scheduler().state_dict()
    assert "_last_lr" in state
    compat.set_scheduler_last_lr(state, [0.25])
    restored = scheduler()
    restored.load_state_dict(state)
    assert restored.get_last_lr() == [0.25]


def test_fused_tensor_ops_match_a_loop():
    tensors = [torch.randn(5), torch.randn(3, 4)]
    expected = [t * 0.5 for t in tensors]
    assert torch.allclose(torch.stack(compat.norms(tensors)), torch.stack([t.norm() for t in tensors]))
    compat.scale_(tensors, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(tensors, expected, strict=True))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_softmax_backward_is_autograds(dtype):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 7, dtype=dtype, requires_grad=True)
    grad = torch.randn(3, 5, 7, dtype=dtype)
    y = torch.softmax(x, dim=-1)
    y.backward(grad)
    assert torch.equal(compat.softmax_backward(grad, y.detach(), -1), x.grad)


def test_native_bf16_answer_and_its_avx2_emulation():
    assert isinstance(compat.cpu_has_native_bf16(), bool)
    code = "from lit_gpt5.compat import cpu_has_native_bf16; print(cpu_has_native_bf16())"
    env = {"ONEDNN_MAX_CPU_ISA": "AVX2", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # what an AVX2-only CPU answers: the seam the precision tests emulate


def test_fake_tensors_trackers_and_the_fake_process_group_exist():
    with compat.fake_tensor_mode():
        t = torch.empty(1000, 1000)
    assert t.shape == (1000, 1000) and type(t).__name__ == "FakeTensor"
    assert hasattr(compat.memory_tracker(), "get_tracker_snapshot")
    assert compat.fake_process_group_store() is not None
    from torch.distributed._composable.fsdp import fully_shard  # noqa: F401 - what FSDPMemTracker tracks

    assert compat.fsdp_memory_tracker.__doc__


def test_the_gpt2_split_pattern_tokenizes_as_gpt2():
    from lit_gpt5.model.tokenizer import get_tokenizer

    assert isinstance(compat.r50k_split_pattern(), str)
    assert get_tokenizer().encode("Hello world, it's 2026!") == [15496, 995, 11, 340, 338, 1160, 2075, 0]


INTERNALS = re.compile(
    r"torch\._(?!_)|_internal\b|\._tools\b|fit_loop|[\x22\x27.]_last_lr\b|_parse_ckpt_path|_mergeable_ranks|_is_mkldnn|"
    r"tiktoken_ext|type\([^)]*\)\.__name__ *[=!]="
)


def test_no_internal_is_used_outside_compat():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "compat.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            if INTERNALS.search(code) and not code.strip().startswith(('"', "'")):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not found, "library internals outside lit_gpt5/compat.py:\n" + "\n".join(found)


def called_by_tests(source: str) -> set[str]:
    """The ``compat.<name>`` a test function of this file calls or uses (a mixin is used by subclassing it)."""
    used = set()
    for test in ast.parse(source).body:
        if isinstance(test, ast.FunctionDef | ast.ClassDef):
            for node in ast.walk(test):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "compat":
                    used.add(node.attr)
    return used


PINNED = called_by_tests(Path(__file__).read_text())


@pytest.mark.parametrize("name", [n for n in vars(compat) if not n.startswith("_") and callable(getattr(compat, n))
                                  and getattr(getattr(compat, n), "__module__", "") == compat.__name__])  # fmt: skip
def test_every_compat_function_is_exercised_here(name):
    assert name in PINNED, f"compat.{name} is used by no test of tests/test_compat.py: pin it with one"


def test_lightning_precision_type_lists_lightnings_values():
    from typing import get_args

    def values(tp) -> set:
        found = set()
        for arg in get_args(tp):
            found |= values(arg) if get_args(arg) else {arg}
        return found

    assert {"32-true", "bf16-mixed", "16-mixed", 32, "bf16"} <= values(compat.lightning_precision_type())


def test_a_lightning_without_the_precision_type_still_imports_the_cli(monkeypatch):
    """The type is read when lit_gpt5.training.trainer is imported: a Lightning that moved it must not break
    ``import lit_gpt5.cli``, only this pin (above)."""
    import lightning.fabric.connector

    monkeypatch.delattr(lightning.fabric.connector, "_PRECISION_INPUT")
    assert compat.lightning_precision_type() == str | int


class RecordDue(L.Callback):
    def __init__(self) -> None:
        self.due: list[bool] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.due.append(compat.validation_due(trainer))


def test_validation_due_follows_lightnings_schedule_and_a_pending_one_reads_as_to_run_again(tmp_path):
    record = RecordDue()
    trainer = fit_tiny(
        tmp_path, limit_val_batches=2, val_check_interval=3, check_val_every_n_epoch=None, callbacks=[record]
    )
    assert record.due == [False, False, True]  # 3 steps, validation after every 3rd batch
    trainer.save_checkpoint(tmp_path / "x.ckpt")
    checkpoint = torch.load(tmp_path / "x.ckpt", weights_only=True)
    compat.mark_validation_pending(checkpoint)
    val_loop = trainer.fit_loop.epoch_loop.val_loop
    val_loop.batch_progress.load_state_dict(checkpoint["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"])
    val_loop.restarting = True
    val_loop.update_restart_stage()
    assert val_loop.restarted_mid_evaluation  # Lightning runs that validation again when resuming


def test_set_available_flops_reaches_every_throughput_of_the_monitor(tmp_path):
    from lightning.pytorch.demos.boring_classes import BoringModel

    from lit_gpt5.training.callbacks import TokenThroughput
    from tests.helpers import quiet_trainer

    monitor = TokenThroughput()
    trainer = quiet_trainer(tmp_path, max_steps=1, callbacks=[monitor])
    trainer.fit(BoringModel())  # no GPT inside: the monitor leaves the peak unknown
    assert monitor.available_flops is None and monitor._throughputs
    compat.set_available_flops(monitor, 123.0)
    assert monitor.available_flops == 123.0
    assert all(t.available_flops == 123.0 for t in monitor._throughputs.values())
