"""Every bad input gets one line (what is wrong, what to do), a non-zero exit, no traceback and no half-written file."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_gpt5.checkpoints import save_checkpoint
from lit_gpt5.cli import main
from lit_gpt5.errors import run_main
from lit_gpt5.model import GPT, GPTConfig
from tests.conftest import REPO

TINY = ["--model.model_name=gpt-nano", "--trainer.max_steps=1", "--trainer.accelerator=cpu"]


def run_cli(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: main(args))
    return exit_.value.code, capsys.readouterr().err


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


@pytest.fixture(autouse=True)
def quiet_lightning():
    """Lightning's INFO lines ("Seed set to ...") are not errors; in-process they also go to a stream pytest closes."""
    import logging

    logging.disable(logging.INFO)
    yield
    logging.disable(logging.NOTSET)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def check(args, capsys, workdir, isolated_cache, pattern: str, code: int = 2) -> str:
    before = files_under(workdir)
    got, err = run_cli(["fit", *TINY, *args], capsys)
    assert got == code
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err  # one line
    assert re.search(pattern, lines[0]), lines[0]
    assert files_under(workdir) == before  # no run directory, no checkpoint, nothing half-written
    assert not [p for p in isolated_cache.rglob("*") if p.name.endswith(".part")]
    return lines[0]


def test_missing_text_file(capsys, workdir, isolated_cache):
    check(["--data.text_path=nope.txt"], capsys, workdir, isolated_cache, r"nope.txt does not exist.*--data.text_path")


def test_directory_instead_of_file(capsys, workdir, isolated_cache, tmp_path):
    check([f"--data.text_path={tmp_path}"], capsys, workdir, isolated_cache, r"is a directory")


@pytest.mark.slow
def test_unreadable_text_file(capsys, workdir, isolated_cache, tmp_path):
    path = tmp_path / "locked.txt"
    path.write_text("text")
    path.chmod(0)
    if os.geteuid() != 0:
        check([f"--data.text_path={path}"], capsys, workdir, isolated_cache, r"cannot read .*Permission denied")
        return
    # Root reads any file; without the capabilities that let it ignore permissions, it is refused like anyone.
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and util-linux setpriv is not installed to drop CAP_DAC_OVERRIDE")
    env = {**os.environ, "PYTHONPATH": str(REPO), "LIT_GPT5_CACHE": str(isolated_cache)}
    cmd = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", sys.executable, "-m", "lit_gpt5.cli", "fit"]
    done = subprocess.run(
        [*cmd, *TINY, f"--data.text_path={path}"], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip().splitlines()[-1]
        == f"error: cannot read {path}: Permission denied; check the file's permissions"
    )
    assert "Traceback" not in done.stderr and files_under(workdir) == []


@pytest.mark.parametrize("content,pattern", [("", r"0 tokens after cleaning"), ("A short book.", r"4 tokens")])
def test_empty_or_short_book(capsys, workdir, isolated_cache, tmp_path, content, pattern):
    path = tmp_path / "book.txt"
    path.write_text(content)
    check([f"--data.text_path={path}"], capsys, workdir, isolated_cache, pattern + r".*smaller --data.block_size")


def test_not_utf8(capsys, workdir, isolated_cache, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Voyage à Lilliput ".encode("latin-1") * 500)
    check([f"--data.text_path={path}"], capsys, workdir, isolated_cache, r"not UTF-8 .*iconv")


def test_unknown_gutenberg_id(capsys, workdir, isolated_cache, http_server, monkeypatch):
    monkeypatch.setenv("LIT_GPT5_GUTENBERG_MIRROR", http_server.url)
    check(["--data.book_id=99999999"], capsys, workdir, isolated_cache, r"book 99999999 does not exist \(HTTP 404")
    assert files_under(isolated_cache) == []


def test_no_network_and_no_cache(capsys, workdir, isolated_cache, monkeypatch):
    monkeypatch.setattr("lit_gpt5.data.gutenberg.time.sleep", lambda s: None)
    line = check([], capsys, workdir, isolated_cache, r"cannot download Project Gutenberg book 829")
    assert str(isolated_cache / "gutenberg" / "829" / "pg829.txt") in line and "--data.text_path" in line


def test_corrupt_token_cache_is_rebuilt_not_trusted(capsys, workdir, isolated_cache, book_path):
    from lit_gpt5.data import GutenbergDataModule

    dm = GutenbergDataModule(text_path=str(book_path))
    dm.prepare_data()
    (cache,) = (isolated_cache / "local").glob("tokens-*.safetensors")
    cache.write_bytes(cache.read_bytes()[:1000])  # truncated, e.g. by a full disk
    dm2 = GutenbergDataModule(text_path=str(book_path))
    dm2.setup("fit")
    assert sum(len(s) for s in dm2.train_segments + dm2.val_segments) == 143_690
    assert "damaged; rebuilding it" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content,pattern",
    [
        ('{"instruction": "a", "output": "b"}\n{"instruction": "a" "output": "b"}\n', r"d.jsonl line 2 column \d+"),
        ('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n', r"d.jsonl line 2: .*no 'output'"),
    ],
)
def test_bad_instruction_file(capsys, workdir, isolated_cache, tmp_path, content, pattern):
    path = tmp_path / "d.jsonl"
    path.write_text(content)
    check(
        ["--data=lit_gpt5.sft.SFTDataModule", f"--data.train_path={path}", "--data.max_length=64"],
        capsys,
        workdir,
        isolated_cache,
        pattern,
    )


def test_unknown_model_name(capsys, workdir, isolated_cache, book_path):
    check(
        [f"--data.text_path={book_path}", "--model.model_name=gpt5"],
        capsys,
        workdir,
        isolated_cache,
        r"unknown model name 'gpt5'; choose one of: model5, gpt2",
    )


def test_block_size_larger_than_positions(capsys, workdir, isolated_cache, book_path):
    check(
        [f"--data.text_path={book_path}", "--data.block_size=512"],
        capsys,
        workdir,
        isolated_cache,
        r"block_size 512 is larger than the model's 256 positions",
    )


@pytest.mark.parametrize(
    "arg,pattern",
    [
        ("--data.batch_size=0", r"batch_size must be a positive integer, got 0"),
        ("--data.batch_size=-3", r"batch_size must be a positive integer, got -3"),
        ("--trainer.accumulate_grad_batches=0", r"accumulate_grad_batches must be a positive integer, got 0"),
        ("--data.val_fraction=0", r"val_fraction must be between 0 and 1"),
    ],
)
def test_non_positive_sizes(capsys, workdir, isolated_cache, book_path, arg, pattern):
    check([f"--data.text_path={book_path}", arg], capsys, workdir, isolated_cache, pattern)


def test_ckpt_path_that_is_not_a_checkpoint(capsys, workdir, isolated_cache, book_path, tmp_path):
    bogus = tmp_path / "model.ckpt"
    bogus.write_text("this is not a checkpoint")
    check(
        [f"--data.text_path={book_path}", f"--ckpt_path={bogus}"],
        capsys,
        workdir,
        isolated_cache,
        r"model.ckpt is not a readable PyTorch checkpoint",
    )
    check(
        [f"--data.text_path={book_path}", f"--ckpt_path={tmp_path / 'missing.ckpt'}"],
        capsys,
        workdir,
        isolated_cache,
        r"missing.ckpt does not exist",
    )
    check(
        [f"--data.text_path={book_path}", f"--model.init_from={bogus}"],
        capsys,
        workdir,
        isolated_cache,
        r"not a readable PyTorch checkpoint",
    )


def test_weights_only_checkpoint_cannot_resume(capsys, workdir, isolated_cache, book_path, tmp_path):
    path = tmp_path / "weights.ckpt"
    save_checkpoint(GPT(GPTConfig.from_name("gpt-nano")), path)
    check(
        [f"--data.text_path={book_path}", f"--ckpt_path={path}"],
        capsys,
        workdir,
        isolated_cache,
        r"holds weights only .* --model.init_from",
    )


def test_incomplete_training_checkpoint(capsys, workdir, isolated_cache, book_path, tmp_path):
    path = tmp_path / "partial.ckpt"
    save_checkpoint(GPT(GPTConfig.from_name("gpt-nano")), path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["optimizer_states"] = []  # an optimizer state, but no schedule or loop state
    torch.save(ckpt, path)
    check(
        [f"--data.text_path={book_path}", f"--ckpt_path={path}"],
        capsys,
        workdir,
        isolated_cache,
        r"not a complete training checkpoint \(no lr_schedulers, loops, global_step\)",
    )


def test_checkpoint_of_another_model(tmp_path):
    # The CLI rebuilds the model from a checkpoint's hyperparameters; in Python a mismatch is named, not a traceback.
    from lit_gpt5.errors import UserError
    from lit_gpt5.lit_module import GPTLitModule

    path = tmp_path / "other.ckpt"
    save_checkpoint(GPT(GPTConfig.from_name("gpt-micro")), path)
    with pytest.raises(UserError, match="holds a model with n_layer=4, but this run builds n_layer=3"):
        GPTLitModule(model_name="gpt-nano").on_load_checkpoint(torch.load(path, weights_only=True))


def test_pickle_payload_is_refused(capsys, workdir, isolated_cache, book_path, tmp_path):
    """A checkpoint that would run code when unpickled is refused by weights_only loading."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, path)
    check(
        [f"--data.text_path={book_path}", f"--model.init_from={path}"],
        capsys,
        workdir,
        isolated_cache,
        r"evil.ckpt is not a readable PyTorch checkpoint",
    )
    assert not marker.exists()


@pytest.mark.slow
def test_real_entry_point_exit_code_and_debug_switch(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "LIT_GPT5_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "lit_gpt5.cli", "fit", "--data.text_path", str(tmp_path / "missing.txt")]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: text file")
    assert "Traceback" not in done.stderr
    debug = subprocess.run(
        cmd, cwd=tmp_path, env={**env, "LIT_GPT5_DEBUG": "1"}, capture_output=True, text=True, timeout=120
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "UserError" in debug.stderr
    assert not (tmp_path / "lightning_logs").exists()


def test_bad_generate_and_convert_arguments(capsys, tmp_path):
    from lit_gpt5.convert import main as convert_main
    from lit_gpt5.generate import main as generate_main

    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: generate_main(["--ckpt", str(tmp_path / "none.ckpt"), "--prompt", "x"]))
    assert exit_.value.code == 2 and "none.ckpt does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: convert_main(["to-hf", "--ckpt", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "o")]))
    assert exit_.value.code == 2 and not (tmp_path / "o").exists()
    json_path = tmp_path / "hf"
    json_path.mkdir()
    (json_path / "config.json").write_text("{not json")
    with pytest.raises(SystemExit):
        run_main(lambda: convert_main(["from-hf", "--hf_dir", str(json_path), "--out", str(tmp_path / "x.ckpt")]))
    assert "config.json is not valid JSON" in capsys.readouterr().err and not (tmp_path / "x.ckpt").exists()
