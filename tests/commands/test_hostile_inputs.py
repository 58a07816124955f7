"""Nothing lost, nothing silent, part three: one test (or more) per class of hostile input, each refused in one line
(or handled and reported) where it used to end in a traceback, train on garbage, or exit 0 having done nothing."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tarfile
import threading

import pytest

from lit_gpt5.errors import run_main
from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.weights.checkpoints import save_checkpoint
from tests.conftest import REPO
from tests.helpers import files_under, tmpfs, write_jsonl

TINY = ["--model.model_name=gpt-nano", "--model.n_layer=1", "--trainer.max_steps=1", "--trainer.accelerator=cpu"]


@pytest.fixture(autouse=True)
def _quiet(quiet_lightning):
    pass


@pytest.fixture(scope="module")
def nano_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("nano") / "nano.ckpt"
    save_checkpoint(GPT(GPTConfig.from_name("gpt-nano", n_layer=1)), path)
    return path


# --- 1. Output on a real file system ---------------------------------------------------------------------------


def test_outputs_under_a_file_are_one_line(refused, nano_ckpt, book_path, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    refused(["convert", "to-hf", "--ckpt", str(nano_ckpt), "--out", str(blocker / "hf")], r"--out .*blocker is a file")
    refused(["convert", "from-hf", "--hf_dir", str(tmp_path), "--out", str(blocker / "m.ckpt")], r"blocker is a file")
    refused(["sft", "gulliver", "--text_path", str(book_path), "--out", str(blocker / "x")], r"blocker is a file")
    refused(
        ["fit", *TINY, f"--data.text_path={book_path}", f"--trainer.default_root_dir={blocker / 'runs'}"],
        r"--trainer.default_root_dir .*blocker is a file, not a folder",
    )


def test_a_cache_that_is_a_file_is_one_line(refused, book_path, tmp_path, monkeypatch):
    cache = tmp_path / "cache-file"
    cache.write_text("x")
    monkeypatch.setenv("LIT_GPT5_CACHE", str(cache))
    refused(["fit", *TINY, f"--data.text_path={book_path}"], r"\$LIT_GPT5_CACHE .*it is a file, not a folder")


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only tmpfs (root may write anywhere else, so permissions alone would not stop it)."""
    with tmpfs(tmp_path / "ro", "ro,size=1m") as path:
        yield path


def test_read_only_outputs_are_one_line(refused, read_only_dir, book_path, nano_ckpt):
    refused(["fit", *TINY, f"--data.text_path={book_path}", f"--trainer.default_root_dir={read_only_dir}"],
            r"read-only file system")  # fmt: skip
    refused(["sft", "gulliver", "--text_path", str(book_path), "--out", str(read_only_dir / "x")], r"read-only")
    refused(["convert", "to-hf", "--ckpt", str(nano_ckpt), "--out", str(read_only_dir / "hf")], r"read-only")
    assert list(read_only_dir.iterdir()) == []


def test_any_file_system_error_with_a_path_is_one_line(capsys):
    def disk_full():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/run/model.safetensors")

    with pytest.raises(SystemExit) as exit_:
        run_main(disk_full)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert err.strip() == (
        "error: cannot write /data/run/model.safetensors: No space left on device; free some space or choose a folder "
        "on another disk"
    )


# --- 2. Data that is not text ----------------------------------------------------------------------------------


def test_binary_files_that_decode_as_utf8_are_refused(refused, tmp_path, book_path):
    zeros = tmp_path / "zeros.txt"
    zeros.write_bytes(b"\0" * 100_000)
    refused(["fit", *TINY, f"--data.text_path={zeros}"], r"zeros.txt is not text: 100% of its characters are control")
    archive = tmp_path / "book.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(book_path, arcname="829-0.txt")
    archive.read_bytes().decode("utf-8")  # it does decode: only the share of control characters gives it away
    refused(["fit", *TINY, f"--data.text_path={archive}"], r"book.tar is not text: \d+% of its characters")


# --- 3. Runs that do nothing, or resume into the wrong thing ----------------------------------------------------


def test_runs_that_would_do_nothing_are_refused_before_the_run_folder(refused, book_path):
    data = f"--data.text_path={book_path}"
    refused(["fit", *TINY, data, "--trainer.max_steps=0"], r"--trainer.max_steps 0 trains nothing")
    refused(["fit", *TINY, data, "--trainer.val_check_interval=0"], r"val_check_interval must be a positive number")


def test_a_pipe_is_read_once(book_path, tmp_path):
    from lit_gpt5.data import GutenbergDataModule

    fifo = tmp_path / "book.fifo"
    os.mkfifo(fifo)
    text = book_path.read_bytes()

    def writer():
        with open(fifo, "wb") as f:
            f.write(text)

    thread = threading.Thread(target=writer)
    thread.start()
    dm = GutenbergDataModule(text_path=str(fifo), block_size=64)
    dm.prepare_data()  # reads the pipe
    dm.setup("fit")  # reads it again: the same text, not an empty one
    thread.join()
    assert sum(len(s) for s in dm.train_segments + dm.val_segments) > 143_000


def test_a_module_and_data_of_different_kinds_are_refused(refused, nano_ckpt, book_path):
    dpo = ["--model=lit_gpt5.tuning.dpo.DPOLitModule", f"--model.init_from={nano_ckpt}"]
    refused(["fit", *dpo, "--trainer.max_steps=1", f"--data.text_path={book_path}"],
            r"DPOLitModule trains on preference pairs .* GutenbergDataModule gives tokens")  # fmt: skip
    prefs = ["--data=lit_gpt5.data.gulliver.GulliverPreferenceDataModule", f"--data.text_path={book_path}"]
    refused(["fit", *TINY, *prefs], r"GPTLitModule trains on token batches .* gives pairs")


# --- 4. Preference data that cannot teach -----------------------------------------------------------------------


def test_degenerate_pairs_are_dropped_and_counted_and_nothing_left_is_refused(refused, tmp_path, nano_ckpt):
    from lit_gpt5.data.preferences import PreferenceDataset
    from lit_gpt5.model.tokenizer import get_tokenizer

    records = [
        {"prompt": "Say hi.", "chosen": "Hi.", "rejected": "Hi."},
        {"prompt": "Say hi.", "chosen": "", "rejected": ""},
        {"prompt": "Say hi.", "chosen": "Hi.", "rejected": "No."},
    ]
    ds = PreferenceDataset(records, get_tokenizer(), 64)
    assert len(ds) == 1 and ds.stats.degenerate == 2 and "2 with chosen = rejected" in ds.stats.table("train")
    same = write_jsonl(tmp_path / "same.jsonl", [records[0]] * 10)
    dpo = ["--model=lit_gpt5.tuning.dpo.DPOLitModule", f"--model.init_from={nano_ckpt}", "--trainer.max_steps=1"]
    refused(["fit", *dpo, "--data=lit_gpt5.data.preferences.PreferenceDataModule", f"--data.train_path={same}",
             "--data.max_length=64"], r"all 9 training records were dropped \(9 with chosen = rejected")  # fmt: skip


# --- 5. Values nobody checked ------------------------------------------------------------------------------------


def test_generate_refuses_a_temperature_that_is_not_a_number(refused, nano_ckpt):
    refused(["generate", "--ckpt", str(nano_ckpt), "--temperature", "nan"], r"--temperature must be a finite number")
    refused(["generate", "--ckpt", str(nano_ckpt), "--temperature", "inf"], r"--temperature must be a finite number")


@pytest.mark.parametrize(
    ("config", "pattern"),
    [
        ({"n_embd": 48, "n_head": 5, "n_layer": 1, "n_positions": 64, "vocab_size": 50257}, r"not divisible by n_head"),
        ({"n_embd": "48", "n_head": 3, "n_layer": 1, "n_positions": 64, "vocab_size": 50257}, r"n_embd must be a pos"),
        ([{"n_embd": 48}], r"holds a JSON list, not an object"),
    ],
)
def test_bad_hugging_face_configs_are_one_line(refused, tmp_path, config, pattern):
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps(config))
    refused(["convert", "from-hf", "--hf_dir", str(hf), "--out", str(tmp_path / "m.ckpt")], pattern)


# --- 6. Changes on resume ----------------------------------------------------------------------------------------


def tiny_fit(book_path, root, steps: int, *extra: str) -> list[str]:
    return [
        "fit", "--model.model_name=gpt-nano", "--model.n_layer=1", "--model.n_embd=16", "--model.n_head=2",
        "--model.warmup_steps=0", f"--data.text_path={book_path}", "--data.block_size=16", "--data.batch_size=4",
        "--data.val_batch_size=1024", f"--trainer.max_steps={steps}", "--trainer.val_check_interval=1000",
        "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}", "--sampler.max_new_tokens=0", "--trainer.precision=32-true", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def accumulated_run(book_path, tmp_path_factory):
    """4 optimizer steps of 2 micro-batches each: 8 micro-batches of the stream trained."""
    from lit_gpt5.cli import main

    root = tmp_path_factory.mktemp("acc")
    main(tiny_fit(book_path, root, 4, "--trainer.accumulate_grad_batches=2"))
    return root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_data_changes_on_resume_are_refused_or_reported(refused, accumulated_run, book_path, tmp_path, capsys):
    from lit_gpt5.cli import main

    ckpt = f"--ckpt_path={accumulated_run}"
    other = tmp_path / "other.txt"
    other.write_text(book_path.read_text()[:200_000])
    args = [f"--data.text_path={other}" if a.startswith("--data.text_path") else a
            for a in tiny_fit(book_path, tmp_path / "a", 6, ckpt)]  # fmt: skip
    refused(args, r"--data.text_path .* differs from the .* of --ckpt_path")
    refused(tiny_fit(book_path, tmp_path / "b", 4, ckpt), r"is at step 4 and --trainer.max_steps is 4: nothing is left")
    capsys.readouterr()
    main(tiny_fit(book_path, tmp_path / "c", 6, ckpt, "--data.batch_size=2", "--trainer.accumulate_grad_batches=1"))
    out = capsys.readouterr().out
    assert "changed data settings: batch_size 4 -> 2, accumulate_grad_batches 2 -> 1" in out
    assert "after the 8 batches already trained" in out


@pytest.mark.slow
def test_a_resume_with_other_accumulation_continues_the_same_stream(accumulated_run, book_path, tmp_path):
    from lit_gpt5.cli import main
    from lit_gpt5.data import GutenbergDataModule

    record = json.dumps([{"class_path": "tests.helpers.RecordStream", "init_args": {"directory": str(tmp_path)}}])
    main(tiny_fit(book_path, tmp_path / "r", 6, f"--ckpt_path={accumulated_run}", "--trainer.accumulate_grad_batches=1",
                  f"--trainer.callbacks={record}"))  # fmt: skip
    seen = [json.loads(line) for line in (tmp_path / "rank0.jsonl").read_text().splitlines() if "first_tokens" in line]
    dm = GutenbergDataModule(text_path=str(book_path), block_size=16, batch_size=4)
    dm.setup("fit")
    stream = dm.train_dataset()
    # Micro-batches 8 and 9 of the stream: neither the 4 x 1 = 4th (as a restart at global_step x accumulate would
    # give) nor a skip.
    assert [s["first_tokens"] for s in seen] == [stream.batch(8)[0][:, 0].tolist(), stream.batch(9)[0][:, 0].tolist()]


# --- 7. Contradictions -------------------------------------------------------------------------------------------


def test_contradictory_arguments_are_refused(refused, book_path):
    refused(
        ["fit", *TINY, "--data.book_ids=[829]", "--data.book_id=1342"], r"not both: the single one would be ignored"
    )
    refused(["fit", *TINY, f"--data.text_path={book_path}", "--data.random_offset=true"],
            r"--data.random_offset true does nothing with --data.sampling random")  # fmt: skip
    refused(["memory", "--strategy", "ddp", "--cpu_offload"], r"DDP .* cannot offload it")


# --- 8. The console script ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_console_script_has_a_version_and_no_args_warning(tmp_path):
    script = shutil.which("lit-gpt5")
    if script is None:
        pytest.skip("the lit-gpt5 console script is not installed (pip install -e .)")
    version = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("lit-gpt5 0.")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([script, "fit", "--print_config"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "args parameter" not in done.stderr and "not recommended" not in done.stderr
    assert files_under(tmp_path) == []
