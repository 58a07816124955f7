import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_gpt5.cli import main
from tests.conftest import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def tiny_args(book_path, steps=40) -> list[str]:
    return [
        "--model.model_name=gpt-nano",
        "--model.n_layer=2",
        "--model.n_embd=32",
        "--model.n_head=2",
        "--model.learning_rate=1e-2",
        "--model.warmup_steps=5",
        f"--data.text_path={book_path}",
        "--data.block_size=32",
        "--data.batch_size=16",
        "--data.val_batch_size=256",
        f"--trainer.max_steps={steps}",
        "--trainer.val_check_interval=20",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
    ]


@pytest.mark.parametrize("config", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("lit_gpt5.")
    assert printed["model"]["init_args"]["model_name"]
    assert printed["data"]["class_path"].startswith("lit_gpt5.")
    assert printed["trainer"]["max_steps"] > 0


def test_defaults_reproduce_the_experiment(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--data.url=http://127.0.0.1:1/book.txt", "--data.batch_size=4", "--print_config"])
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["init_args"]["model_name"] == "model5"
    assert cfg["data"]["class_path"] == "lit_gpt5.data.GutenbergDataModule"
    assert cfg["data"]["init_args"]["block_size"] == 256
    assert cfg["data"]["init_args"]["url"] == "http://127.0.0.1:1/book.txt"
    assert cfg["data"]["init_args"]["batch_size"] == 4
    assert cfg["trainer"]["max_steps"] == 500
    assert cfg["trainer"]["val_check_interval"] == 100
    assert cfg["trainer"]["logger"] is None  # Lightning's default: TensorBoard under default_root_dir


@pytest.mark.skipif(torch.cuda.is_available(), reason="what the README's main command does on a machine with no GPU")
def test_the_main_command_runs_on_a_machine_without_a_gpu(book_path, tmp_path, capsys):
    # The README's command, with the model and the run made small: the Trainer (where "gpu" failed at once) is built
    # from configs/model5.yaml as it is, and the start-up line says where it trains.
    small = ["--model.n_layer=1", "--model.n_embd=32", "--model.n_head=2", "--data.batch_size=2",
             "--trainer.max_steps=2", "--trainer.val_check_interval=2", "--trainer.limit_val_batches=1",
             "--sampler.max_new_tokens=0", "--trainer.enable_progress_bar=false"]  # fmt: skip
    main(["fit", "--config", str(REPO / "configs" / "model5.yaml"), f"--data.text_path={book_path}",
          f"--trainer.default_root_dir={tmp_path}", *small])  # fmt: skip
    out = capsys.readouterr().out
    assert "lit_gpt5: training on cpu (no GPU found" in out, out
    assert list((tmp_path / "lightning_logs" / "version_0" / "checkpoints").glob("last.ckpt"))


@pytest.mark.slow
def test_fit_end_to_end_writes_tensorboard_and_learns(book_path, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    # --trainer.default_root_dir moves everything, TensorBoard logs included, as in plain Lightning.
    main(["fit", *tiny_args(book_path), f"--trainer.default_root_dir={tmp_path / 'out'}"])
    assert list(work.iterdir()) == []
    (run,) = glob.glob(str(tmp_path / "out" / "lightning_logs" / "version_*"))
    logged = scalars(Path(run))
    assert {"train/loss", "val/loss", "val/ppl", "lr", "train/tokens", "train/device/items_per_sec"} <= set(logged)
    val = logged["val/loss"]
    assert [step for step, _ in val] == [0, 20, 40]
    assert val[0][1] > 10.5  # untrained: about ln(50257) = 10.8
    assert val[-1][1] < val[1][1] < val[0][1] - 2.0
    assert len(logged["train/loss"]) >= 3
    assert logged["train/tokens"][-1][1] == 40 * 16 * 32
    # MFU on a CPU too: against this machine's measured matmul speed (lit_gpt5.training.peak)
    assert logged["train/device/mfu"] and all(0 < v < 10 for _, v in logged["train/device/mfu"])
    out = capsys.readouterr().out
    assert "sample at step 0" in out and "sample at step 40" in out
    ckpts = sorted(Path(run, "checkpoints").glob("*.ckpt"))
    assert {p.name for p in ckpts} >= {"last.ckpt"}
    assert Path(run, "config.yaml").exists()

    # validate and test from the checkpoint give the same held-out loss the training run logged.
    best = next(p for p in ckpts if p.name != "last.ckpt")
    main(["validate", *tiny_args(book_path), f"--ckpt_path={best}"])
    main(["test", *tiny_args(book_path), f"--ckpt_path={best}"])
    out = capsys.readouterr().out
    assert f"{min(v for _, v in val):.4f}"[:5] in out
    assert "test/loss" in out


@pytest.mark.slow  # the installed script, in processes of its own
def test_console_script_dispatches_every_command():
    script = shutil.which("lit-gpt5")
    if script is None:
        msg = "the lit-gpt5 console script is not installed (pip install -e .)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert all(name in done.stdout for name in ("fit", "generate", "convert", "sft", "memory"))
    done = subprocess.run([script, "sft", "show", "-n", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    done = subprocess.run([script, "train"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown command 'train'" in done.stderr
