"""Stop a run (killed, Ctrl-C, SIGTERM, NaN), resume it with --ckpt_path, get what an uninterrupted run gets."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import REPO

pytestmark = pytest.mark.slow

STEPS, ACCUMULATE = 40, 2


def config(book_path, root: Path, callbacks: list | None = None, steps: int = STEPS) -> Path:
    cfg = {
        "seed_everything": 7,
        "trainer": {
            "accelerator": "cpu",
            "max_steps": steps,
            "accumulate_grad_batches": ACCUMULATE,
            "val_check_interval": 20,  # micro-batches: every 10 optimizer steps
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(root), "name": "runs"},
            },
            "callbacks": callbacks or [],
        },
        "last_checkpoint": {"every_n_train_steps": 5},
        "model": {
            "model_name": "gpt-nano",
            "n_layer": 2,
            "n_embd": 32,
            "n_head": 2,
            "dropout": 0.1,  # exercises the RNG: a resumed run must draw the same dropout masks
            "learning_rate": 3e-3,
            "warmup_steps": 5,
        },
        "data": {
            "class_path": "lit_gpt5.data.GutenbergDataModule",
            "init_args": {"text_path": str(book_path), "block_size": 32, "batch_size": 4, "val_batch_size": 512},
        },
    }
    path = root / f"config-{len(list(root.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(cfg: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lit_gpt5.cli", "fit", "--config", str(cfg), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_dir(root: Path, version: int) -> Path:
    return root / "runs" / f"version_{version}"


def losses(log_dir: Path, tag: str) -> dict[int, float]:
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)} if tag in acc.Tags()["scalars"] else {}


def state(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)


def assert_same_training_state(a: Path, b: Path) -> None:
    sa, sb = state(a), state(b)
    assert sa["global_step"] == sb["global_step"] == STEPS
    for name, tensor in sa["state_dict"].items():
        assert torch.equal(tensor, sb["state_dict"][name]), name  # bitwise
    for i, group in sa["optimizer_states"][0]["state"].items():
        for key, value in group.items():
            assert torch.equal(value, sb["optimizer_states"][0]["state"][i][key]), (i, key)
    assert sa["lr_schedulers"][0]["last_epoch"] == sb["lr_schedulers"][0]["last_epoch"]


@pytest.fixture(scope="module")
def reference(book_path, tmp_path_factory):
    """An uninterrupted run of 40 optimizer steps."""
    root = tmp_path_factory.mktemp("reference")
    done = cli(config(book_path, root), cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir(root, 0)


def test_killed_run_resumes_bitwise(book_path, tmp_path, reference):
    # SIGKILL at the start of micro-batch 35: inside optimizer step 17 (0-based), which is lost with the process.
    killer = {"class_path": "tests.helpers.SignalAt", "init_args": {"micro_batch": 35}}
    killed = cli(config(book_path, tmp_path, [killer]), cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL
    last = run_dir(tmp_path, 0) / "checkpoints" / "last.ckpt"
    assert state(last)["global_step"] == 15  # the last periodic save (every 5 steps) before the kill

    resumed = cli(config(book_path, tmp_path), f"--ckpt_path={last}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training_state(
        reference / "checkpoints" / "last.ckpt", run_dir(tmp_path, 1) / "checkpoints" / "last.ckpt"
    )
    # Same logged losses for every step after the resume point: same batches, same dropout, same schedule.
    expected, got = losses(reference, "train/loss"), losses(run_dir(tmp_path, 1), "train/loss")
    assert set(got) == {s for s in expected if s >= 15} and len(got) == STEPS - 15
    assert all(got[s] == expected[s] for s in got)
    assert losses(run_dir(tmp_path, 1), "val/loss")[40] == losses(reference, "val/loss")[40]


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 1), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_stop_at_a_step_boundary_and_resume_exactly(book_path, tmp_path, reference, signum, code):
    # The signal arrives at micro-batch 23, the first half of step 11: the run finishes step 11, saves, stops.
    sender = {"class_path": "tests.helpers.SignalAt", "init_args": {"micro_batch": 23, "signum": int(signum)}}
    stopped = cli(config(book_path, tmp_path, [sender]), cwd=tmp_path)
    assert stopped.returncode == code, stopped.stderr[-3000:]
    last = run_dir(tmp_path, 0) / "checkpoints" / "last.ckpt"
    assert f"stopped at step 12; checkpoint: {last}" in stopped.stderr
    assert state(last)["global_step"] == 12
    resumed = cli(config(book_path, tmp_path), f"--ckpt_path={last}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training_state(
        reference / "checkpoints" / "last.ckpt", run_dir(tmp_path, 1) / "checkpoints" / "last.ckpt"
    )


def test_sigterm_during_a_validation_stops_at_its_next_batch_and_the_resume_runs_it_again(
    book_path, tmp_path, reference
):
    # 8 held-out batches; SIGTERM as batch 2 of the validation after step 10 starts: the run stops at batch 3,
    # before the validation ends, keeps step 10's weights, and the resumed run validates step 10 in full.
    small_batches = "--data.val_batch_size=64"
    sender = {"class_path": "tests.helpers.SignalAtValidation", "init_args": {"step": 10, "batch": 2}}
    stopped = cli(config(book_path, tmp_path, [sender]), small_batches, cwd=tmp_path)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    last = run_dir(tmp_path, 0) / "checkpoints" / "last.ckpt"
    assert f"stopped at step 10; checkpoint: {last}" in stopped.stderr
    assert "step 10: val/loss" not in stopped.stdout  # stopped inside the validation, not after it
    assert state(last)["global_step"] == 10
    resumed = cli(config(book_path, tmp_path), f"--ckpt_path={last}", small_batches, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step 10: val/loss" in resumed.stdout  # the interrupted validation, run again in full
    assert_same_training_state(
        reference / "checkpoints" / "last.ckpt", run_dir(tmp_path, 1) / "checkpoints" / "last.ckpt"
    )
    expected, got = losses(reference, "val/loss"), losses(run_dir(tmp_path, 1), "val/loss")
    assert sorted(got) == [10, 20, 30, 40]
    assert all(abs(got[s] - expected[s]) < 1e-5 for s in got)  # batches of 64 instead of 512: rounding only


@pytest.mark.parametrize("accumulate,saved_step", [(2, 5), (1, 8)])
def test_nonfinite_loss_stops_before_the_update_naming_step_and_checkpoint(book_path, tmp_path, accumulate, saved_step):
    nan = {"class_path": "tests.helpers.NaNAt", "init_args": {"step": 8}}
    stopped = cli(config(book_path, tmp_path, [nan]), f"--trainer.accumulate_grad_batches={accumulate}", cwd=tmp_path)
    assert stopped.returncode == 2
    last = run_dir(tmp_path, 0) / "checkpoints" / "last.ckpt"
    error = [line for line in stopped.stderr.splitlines() if line.startswith("error:")]
    # Accumulating, the stop falls inside a step: the last checkpoint taken at a step boundary (step 5) is the
    # one a resume can continue exactly, so it is kept and named. Without accumulation the step's start is saved.
    where = (
        f"last good checkpoint: {last} (step 5)"
        if accumulate > 1
        else f"the weights before this step are saved to {last}"
    )
    assert error == [
        f"error: loss nan at step 8: stopped before the update; {where}; "
        "resume from it with a lower --model.learning_rate, or pass --model.on_nonfinite skip"
    ]
    assert "Traceback" not in stopped.stderr
    saved = state(last)
    assert saved["global_step"] == saved_step
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values())


def test_nonfinite_loss_can_be_skipped(book_path, tmp_path):
    nan = {"class_path": "tests.helpers.NaNAt", "init_args": {"step": 8}}
    done = cli(config(book_path, tmp_path, [nan], steps=12), "--model.on_nonfinite=skip", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "non-finite loss at step 8; skipping this optimizer step" in done.stderr  # a warning: stderr
    saved = state(run_dir(tmp_path, 0) / "checkpoints" / "last.ckpt")
    assert saved["global_step"] == 12 and saved["lit_gpt5"]["skipped_steps"] == 1
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values())
