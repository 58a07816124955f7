"""A full disk while saving a checkpoint: one line, no partial file anywhere, the earlier checkpoint intact."""

import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO
from tests.helpers import tmpfs

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    """A 14 MiB tmpfs: room for one checkpoint of the model below (about 9.8 MB), not for a second beside it."""
    with tmpfs(tmp_path / "disk", "size=14m") as disk:
        yield disk


def test_no_space_left_is_one_line_and_leaves_no_partial_file(book_path, small_disk, tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmpdir), "LIT_GPT5_CACHE": str(tmp_path / "cache")}
    args = [
        "--model.model_name=gpt-nano",
        "--model.n_layer=1",
        "--model.n_embd=16",
        "--model.n_head=2",
        f"--data.text_path={book_path}",
        "--data.block_size=16",
        "--data.batch_size=2",
        "--data.val_batch_size=1024",
        "--trainer.max_steps=8",
        "--trainer.val_check_interval=1000",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={small_disk}",
        "--sampler.max_new_tokens=0",
        "--last_checkpoint.every_n_train_steps=2",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "lit_gpt5.cli", "fit", *args], env=env, capture_output=True, text=True, timeout=300
    )
    checkpoints = small_disk / "lightning_logs" / "version_0" / "checkpoints"
    last = checkpoints / "last.ckpt"
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: no space left on {checkpoints} while saving last.ckpt; the last good checkpoint is {last} (step 2); "
        "free some space (or pass another --trainer.default_root_dir) and resume with --ckpt_path"
    ]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt"]  # no .part, no 0-byte file
    assert torch.load(last, weights_only=True)["global_step"] == 2  # whole, and still the step-2 checkpoint
    assert [p for p in tmpdir.rglob("*") if p.is_file()] == []  # nothing staged in $TMPDIR either


# --- every other command that writes: one line naming the file, exit 2, nothing half-written ----------------------

# Commands run in this process (``refused``); their output folder on a disk with room for a few kilobytes only.


def leftovers(disk) -> list[str]:
    """What a refused command left on the disk: partial files, temporary folders, outputs of any size."""
    return sorted(str(p.relative_to(disk)) for p in disk.rglob("*"))


@pytest.fixture
def tiny_disk(tmp_path):
    """A tmpfs of 64 KiB: a folder fits, a model, a book's tokens or a data set do not."""
    with tmpfs(tmp_path / "tiny", "size=64k") as disk:
        yield disk


@pytest.fixture
def nano_weights(tmp_path):
    from lit_gpt5.model.gpt import GPT, GPTConfig
    from lit_gpt5.weights.checkpoints import save_checkpoint
    from lit_gpt5.weights.hf import save_hf

    torch.manual_seed(0)
    model = GPT(GPTConfig.from_name("gpt-nano", n_layer=1))
    save_checkpoint(model, tmp_path / "nano.ckpt")
    save_hf(model, tmp_path / "nano-hf")
    return tmp_path / "nano.ckpt", tmp_path / "nano-hf"


def test_data_build_on_a_full_disk(book_path, tiny_disk, refused):
    out = tiny_disk / "store"
    line = refused(["data", "build", "--out", str(out), "--text_paths", str(book_path)], r"No space left on device")
    assert str(out / "shard-00000.bin") in line, line
    assert leftovers(tiny_disk) == [], leftovers(tiny_disk)  # a new store that got nowhere: no folder left


@pytest.mark.parametrize("command", ["to-hf", "from-hf"])
def test_convert_on_a_full_disk(command, nano_weights, tiny_disk, refused):
    ckpt, hf = nano_weights
    if command == "to-hf":
        argv, written = ["convert", "to-hf", "--ckpt", str(ckpt), "--out", str(tiny_disk / "hf")], "model.safetensors"
    else:
        argv, written = ["convert", "from-hf", "--hf_dir", str(hf), "--out", str(tiny_disk / "w.ckpt")], "w.ckpt"
    line = refused(argv, r"No space left on device")
    assert f"{written}: No space left on device" in line or f"{written}:" in line, line
    assert leftovers(tiny_disk) == [], leftovers(tiny_disk)  # not even the empty folder to-hf made


def test_sft_exports_on_a_full_disk(book_path, tiny_disk, refused):
    for kind in ("gulliver", "preferences"):
        out = tiny_disk / kind
        line = refused(["sft", kind, "--text_path", str(book_path), "--out", str(out)], r"No space left on device")
        assert str(out / "train.jsonl") in line or str(out / "val.jsonl") in line, line
        assert leftovers(tiny_disk) == [], leftovers(tiny_disk)  # neither file, nor the folder made for them


def test_reward_pairs_and_eval_on_a_full_disk(shared_dir, nano_weights, tiny_disk, tmp_path, refused):
    ckpt, _ = nano_weights
    books = [str(shared_dir / "data" / "gutenberg" / f"{n}-0.txt") for n in (829, 1342, 84)]
    pairs = ["reward", "pairs", "--ckpt", str(ckpt), "--text_paths", *books, "--target", "829-0",
             "--train_prompts", "30", "--eval_prompts", "6", "--samples", "2", "--max_new_tokens", "4"]  # fmt: skip
    (tiny_disk / "filler").write_bytes(b"\0" * (56 << 10))  # room for a few KiB: less than the pairs and prompts
    refused([*pairs, "--out", str(tiny_disk / "pairs")], r"No space left on device")
    assert leftovers(tiny_disk) == ["filler"], leftovers(tiny_disk)  # the pairs are written whole or not at all
    from lit_gpt5.commands.reward import main as reward

    reward([*pairs[1:], "--out", str(tmp_path / "pairs")])  # room elsewhere: the pairs to evaluate with
    evaluate = ["reward", "eval", "--ckpt", str(ckpt), "--reward", str(tmp_path / "pairs" / "reward.json"),
                "--prompts", str(tmp_path / "pairs" / "eval_prompts.jsonl"), "--samples", "2",
                "--max_new_tokens", "4"]  # fmt: skip
    (tiny_disk / "filler").write_bytes(b"\0" * (62 << 10))  # room for less than the results' JSON
    line = refused([*evaluate, "--json_out", str(tiny_disk / "result.json")], r"No space left on device")
    assert "result.json" in line and leftovers(tiny_disk) == ["filler"], leftovers(tiny_disk)


def test_convert_to_peft_on_a_full_disk(tiny_disk, tmp_path, refused):
    from dataclasses import asdict

    from lit_gpt5.model.gpt import GPT, GPTConfig
    from lit_gpt5.model.lora import apply_lora, lora_settings

    model = apply_lora(GPT(GPTConfig.from_name("gpt-nano", n_layer=1)), r=8, targets=("c_attn", "wte"))
    ckpt = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "lit_gpt5": {"model_config": asdict(model.config), "lora": lora_settings(model)}}  # fmt: skip
    torch.save(ckpt, tmp_path / "lora.ckpt")  # its adapters (the embedding's: 50,257 x 8) do not fit in 64 KiB
    line = refused(["convert", "to-peft", "--ckpt", str(tmp_path / "lora.ckpt"), "--out", str(tiny_disk / "peft")],
                   r"No space left on device")  # fmt: skip
    assert "adapter_model.safetensors" in line and leftovers(tiny_disk) == [], leftovers(tiny_disk)


def test_the_token_cache_on_a_full_disk(book_path, tiny_disk, refused, monkeypatch):
    monkeypatch.setenv("LIT_GPT5_CACHE", str(tiny_disk))  # the book's tokens (280 KB) are cached there first
    fit = ["fit", "--model.model_name=gpt-nano", "--model.n_layer=1", f"--data.text_path={book_path}",
           "--trainer.max_steps=1", "--trainer.accelerator=cpu"]  # fmt: skip
    line = refused(fit, r"No space left on device")
    assert ".safetensors" in line and not list(tiny_disk.rglob("*.part")), leftovers(tiny_disk)
