"""Two CPU processes (DDP over gloo) as one run: distinct windows per rank, one val loss, one stream across resumes,
and one stop for all ranks when a signal reaches only one of them."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import REPO

pytestmark = pytest.mark.slow
B, T = 4, 16


def run(book_path, root, steps: int, *extra: str, record: str | None = None) -> subprocess.CompletedProcess:
    args = [
        "--model.model_name=gpt-nano",
        "--model.n_layer=1",
        "--model.n_embd=16",
        "--model.n_head=2",
        f"--data.text_path={book_path}",
        f"--data.block_size={T}",
        f"--data.batch_size={B}",
        "--data.val_batch_size=1024",
        f"--trainer.max_steps={steps}",
        "--trainer.val_check_interval=3",
        "--trainer.log_every_n_steps=1",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={root}",
        "--sampler.max_new_tokens=0",
        "--last_checkpoint.every_n_train_steps=3",
        *(
            ["--trainer.callbacks+=tests.helpers.RecordStream", f"--trainer.callbacks.directory={record}"]
            if record
            else []
        ),
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "LIT_GPT5_CACHE": str(root / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "lit_gpt5.cli", "fit", *args], env=env, capture_output=True, text=True, timeout=300
    )


def records(directory, rank: int) -> list[dict]:
    with open(directory / f"rank{rank}.jsonl") as f:
        return [json.loads(line) for line in f]


def steps_seen(directory, rank: int) -> dict[int, list[int]]:
    return {r["step"]: r["first_tokens"] for r in records(directory, rank) if "first_tokens" in r}


@pytest.fixture(scope="module")
def uninterrupted(book_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    (root / "rec").mkdir()
    done = run(book_path, root, 6, record=str(root / "rec"))
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def test_ranks_draw_different_windows_and_agree_on_the_val_loss(uninterrupted):
    seen = [steps_seen(uninterrupted / "rec", rank) for rank in (0, 1)]
    assert sorted(seen[0]) == sorted(seen[1]) == list(range(6))
    assert all(seen[0][s] != seen[1][s] for s in range(6))  # each rank its own windows
    vals = [[r["val_loss"] for r in records(uninterrupted / "rec", rank) if "val_loss" in r] for rank in (0, 1)]
    assert len(vals[0]) == 2 and vals[0] == vals[1]  # one held-out loss, not one per rank
    acc = EventAccumulator(str(uninterrupted / "lightning_logs" / "version_0"))
    acc.Reload()
    assert acc.Scalars("train/tokens")[-1].value == 6 * 2 * B * T  # both ranks' tokens


def test_sigterm_to_one_rank_stops_every_rank_at_the_same_step(book_path, tmp_path):
    # SIGTERM reaches rank 1 alone, at its 5th micro-batch (step 4): both ranks finish step 4 and stop together.
    sender = ["--trainer.callbacks+=tests.helpers.SignalOnRank", "--trainer.callbacks.micro_batch=4"]
    sender += [f"--trainer.callbacks.signum={int(signal.SIGTERM)}", "--trainer.callbacks.rank=1"]
    stopped = run(book_path, tmp_path, 20, *sender)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert stopped.stderr.count(f"stopped at step 5; checkpoint: {last}") == 1
    assert torch.load(last, weights_only=True)["global_step"] == 5


def micro_batches_seen(directory) -> dict[int, list[list[int]]]:
    """step -> the first tokens of each micro-batch one process trained at that step, in order."""
    seen: dict[int, list[list[int]]] = {}
    for r in records(directory, 0):
        if "first_tokens" in r:
            seen.setdefault(r["step"], []).append(r["first_tokens"])
    return seen


def test_a_run_resumed_on_the_same_or_another_number_of_ranks_continues_the_same_global_stream(
    book_path, uninterrupted, tmp_path
):
    # 2 ranks x 1 micro-batch and 1 rank x 2 micro-batches train the same global batches per optimizer step (2s and
    # 2s + 1): saved on 2 ranks and resumed on 2 or on 1, and saved on 1 and resumed on 2, the stream goes on with
    # neither a repeat nor a skip. Each resume runs in a folder of its own, so one saved run serves two resumes.
    expected = [steps_seen(uninterrupted / "rec", rank) for rank in (0, 1)]
    one_rank = ["--trainer.devices=1", "--trainer.accumulate_grad_batches=2"]
    saved = {}
    for name, ranks in (("saved-on-2", []), ("saved-on-1", one_rank)):
        first = run(book_path, tmp_path / name, 3, *ranks)
        assert first.returncode == 0, first.stderr[-3000:]
        saved[name] = tmp_path / name / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    for name, source, after in (("2to2", "saved-on-2", []), ("2to1", "saved-on-2", one_rank),
                                ("1to2", "saved-on-1", [])):  # fmt: skip
        root = tmp_path / name
        (root / "rec").mkdir(parents=True)
        resumed = run(book_path, root, 6, f"--ckpt_path={saved[source]}", *after, record=str(root / "rec"))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        if after:  # one process, two micro-batches a step
            assert micro_batches_seen(root / "rec") == {s: [expected[0][s], expected[1][s]] for s in (3, 4, 5)}
        else:
            for rank in (0, 1):
                assert steps_seen(root / "rec", rank) == {s: expected[rank][s] for s in (3, 4, 5)}
