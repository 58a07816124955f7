"""Every bad input gets one line (what is wrong, what to do), a non-zero exit, no traceback and no half-written file."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from lit_gpt5.errors import run_main
from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.weights.checkpoints import save_checkpoint
from tests.conftest import REPO
from tests.helpers import files_under, refusal, write_jsonl

TINY = ["--model.model_name=gpt-nano", "--trainer.max_steps=1", "--trainer.accelerator=cpu"]


@pytest.fixture(autouse=True)
def _quiet(quiet_lightning):
    pass


def check(args, capsys, workdir, isolated_cache, pattern: str, code: int = 2) -> str:
    return refusal(["fit", *TINY, *args], capsys, workdir, isolated_cache, pattern, code)


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
    assert "damaged; rebuilding it" in capsys.readouterr().err  # a warning: stderr


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
        ["--data=lit_gpt5.data.instructions.SFTDataModule", f"--data.train_path={path}", "--data.max_length=64"],
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


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error of a machine without a GPU")
@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_a_gpu_asked_for_without_one_names_the_fix(capsys, workdir, isolated_cache, book_path, accelerator):
    check(
        [f"--data.text_path={book_path}", f"--trainer.accelerator={accelerator}"],
        capsys,
        workdir,
        isolated_cache,
        rf"--trainer.accelerator {accelerator}: this machine has no GPU that PyTorch can use; pass "
        r"--trainer.accelerator auto \(or cpu\) .* or --config configs/cpu-demo.yaml",
    )


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
    from lit_gpt5.training.module import GPTLitModule

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
    from lit_gpt5.commands.convert import main as convert_main
    from lit_gpt5.commands.generate import main as generate_main

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


# --- Inputs that are not what they claim ---------------------------------------------------------------------------

HTML = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Please log in</body></html>\n" * 20


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "text/plain"])
def test_a_url_that_returns_html_is_refused_and_not_cached(refused, http_server, isolated_cache, content_type):
    def route(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(HTML)))
        handler.end_headers()
        handler.wfile.write(HTML)

    http_server.routes["/book.txt"] = route
    refused(["fit", *TINY, f"--data.url={http_server.url}/book.txt"], r"book.txt is an HTML page .*plain-text")
    assert files_under(isolated_cache) == []  # nothing cached: the next run asks the server again


def test_an_html_file_as_text_path_is_refused(refused, tmp_path):
    page = tmp_path / "book.txt"
    page.write_bytes(HTML)
    refused(["fit", *TINY, f"--data.text_path={page}"], r"is an HTML page \(it starts with HTML markup\)")


def test_a_validation_set_whose_every_record_is_dropped_is_refused(refused, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"instruction": "Say hi.", "output": "Hi."}] * 4)
    val = write_jsonl(tmp_path / "val.jsonl", [{"prompt": "", "response": ""}] * 3)
    refused(
        ["fit", *TINY, "--data=lit_gpt5.data.instructions.SFTDataModule", "--data.max_length=64"]
        + ["--data.template=none", f"--data.train_path={train}", f"--data.val_path={val}"],
        r"all 3 validation records were dropped",
    )


def test_a_nan_validation_loss_is_never_the_best_checkpoint():
    from lit_gpt5.training.callbacks import BestCheckpoint

    best = BestCheckpoint()
    assert not best.check_monitor_top_k(trainer=None, current=torch.tensor(float("nan")))
    assert not best.check_monitor_top_k(trainer=None, current=torch.tensor(float("inf")))
    assert best.check_monitor_top_k(trainer=None, current=torch.tensor(3.0))  # no best yet: a number is kept


# --- Tracebacks that are one line ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content,pattern",
    [
        (b"trainer:\n  max_steps: [1\n", r"a --config file is not valid YAML: .*line 3"),
        (bytes(range(256)) * 4, r"a --config file is not text \(YAML\)"),
        (b"just a sentence\n", r"a --config file must hold a YAML mapping"),
        (b"trainer:\n  max_stepz: 3\n", r"--trainer.max_stepz is not an argument of fit"),
    ],
)
def test_a_bad_config_file(refused, tmp_path, content, pattern):
    config = tmp_path / "bad.yaml"
    config.write_bytes(content)
    refused(["fit", "--config", str(config)], pattern)


@pytest.mark.parametrize(
    "args,pattern",
    [
        (["--model.dropout=1.5"], r"--model.dropout must be in \[0, 1\), got 1.5"),
        (["--model.n_head=5"], r"n_embd 48 is not divisible by n_head 5 .*--model.n_head among 3, 4, 6"),
        (["--model.n_layer=0"], r"--model.n_layer must be a positive integer, got 0"),
        (["--sampler.template={instruction} {question}"], r"unknown field\(s\) \{question\}"),
    ],
)
def test_model_and_sampler_arguments_that_cannot_work(refused, book_path, args, pattern):
    refused(["fit", *TINY, f"--data.text_path={book_path}", *args], pattern)


def test_other_commands_answer_in_one_line(refused, tmp_path, book_path, hf_dir):
    if not torch.cuda.is_available():
        refused(["generate", "--ckpt", str(hf_dir), "--device", "cuda"], r"no CUDA GPU .*--device cpu")
    refused(["generate", "--ckpt", str(hf_dir), "--device", "tpu9"], r"not a device name")
    existing = tmp_path / "existing.txt"
    existing.write_text("keep me")
    ckpt = tmp_path / "w.ckpt"
    save_checkpoint(GPT(GPTConfig.from_name("gpt-nano")), ckpt)
    refused(["convert", "to-hf", "--ckpt", str(ckpt), "--out", str(existing)], r"--out .* is an existing file")
    refused(["sft", "gulliver", "--text_path", str(book_path), "--out", str(existing)], r"is an existing file")
    assert existing.read_text() == "keep me"
    records = write_jsonl(tmp_path / "r.jsonl", [{"instruction": "a", "output": "b"}])
    refused(["sft", "show", "--train_path", records, "--template", "{instruction}{oops}"], r"unknown field")
    refused(["convert", "to-hf", "--ckpt", str(ckpt)], r"the following arguments are required: --out")


# --- No run folder left behind -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,pattern",
    [
        (["--data.val_fraction=1e-6"], r"holds out 1 token\(s\) of 143690: nothing to validate on"),
        (["--trainer.max_steps=-1"], r"--trainer.max_steps must be a positive number of optimizer steps, got -1"),
    ],
)
def test_refused_before_the_run_folder_exists(refused, book_path, args, pattern):
    refused(["fit", *TINY, f"--data.text_path={book_path}", *args], pattern)


@pytest.mark.parametrize(
    "records,args,pattern",
    [
        (
            [{"instruction": "a", "output": "b"}],
            ["--data.max_length=1"],
            r"max_length must be at least 2 tokens, got 1",
        ),
        # Empty prompt and response: only <|endoftext|>, predicted from nothing, so nothing to supervise.
        ([{"prompt": "", "response": ""}], ["--data.template=none"], r"all 18 training records were dropped"),
    ],
)
def test_instruction_data_refused_before_the_run_folder_exists(refused, tmp_path, records, args, pattern):
    path = write_jsonl(tmp_path / "d.jsonl", records * 20)
    sft = "--data=lit_gpt5.data.instructions.SFTDataModule"
    refused(["fit", *TINY, sft, f"--data.train_path={path}", *args], pattern)


# --- Advice that helps ---------------------------------------------------------------------------------------------


def test_a_cp1252_file_is_told_to_convert_from_cp1252(refused, tmp_path):
    path = tmp_path / "windows.txt"
    path.write_bytes("Voyage to Lilliput \u2014 \u201cquoted\u201d ".encode("cp1252") * 400)
    line = refused(["fit", *TINY, f"--data.text_path={path}"], r"it looks like cp1252: .*iconv -f cp1252 -t utf-8")
    assert "latin1" not in line
    plain = tmp_path / "latin1.txt"
    plain.write_bytes("Voyage à Lilliput ".encode("latin-1") * 400)  # no 0x80-0x9F bytes: latin-1 is right
    refused(["fit", *TINY, f"--data.text_path={plain}"], r"iconv -f latin1")


def test_a_single_json_object_is_not_called_invalid(refused, tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"instruction": "a", "output": "b"}, indent=2))
    line = refused(["sft", "show", "--train_path", str(path)], r"is a single JSON object, not a list of records")
    assert "invalid JSON" not in line


@pytest.mark.parametrize(
    "arg,pattern",
    [
        ("--data.split=tial", r"^error: --data.split: expected one of 'tail', 'interleaved', got 'tial'; see "),
        ("--data.batch_size=two", r"^error: --data.batch_size: expected an integer, got 'two'; see "),
        ("--data.sampling=epochs", r"^error: --data.sampling: expected one of 'random', 'shuffled', 'sequential'"),
        ("--data.nope=3", r"^error: --data.nope is not an argument of lit_gpt5.data.GutenbergDataModule"),
    ],
)
def test_type_errors_are_one_line_naming_argument_value_and_choices(capsys, workdir, isolated_cache, arg, pattern):
    line = refusal(["fit", arg], capsys, workdir, isolated_cache, pattern)
    assert len(line) < 200


# --- sft show ------------------------------------------------------------------------------------------------------


def test_sft_show_refuses_what_it_cannot_show(refused, tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "a", "output": "b"}])
    refused(["sft", "show", "--train_path", path, "-n", "-1"], r"argument -n: expected a positive integer, got -1")
    refused(["sft", "show", "--train_path", path, "-n", "0"], r"expected a positive integer, got 0")
    dropped = write_jsonl(tmp_path / "dropped.jsonl", [{"prompt": "", "response": ""}] * 2)
    refused(
        ["sft", "show", "--train_path", dropped, "--template", "none"],
        r"all 2 records shown were dropped: none has a response token left",
    )


# --- The commands and data formats added since: samplers, several books, preference pairs --------------------------


def test_new_data_options_and_formats_answer_in_one_line(refused, tmp_path, book_path):
    text = [f"--data.text_path={book_path}"]
    refused(["fit", *TINY, *text, "--data.sampling=shuffle"], r"--data.sampling: expected one of .*'shuffled'")
    refused(["fit", *TINY, f"--data.text_paths=[{book_path}, {tmp_path / 'nope.txt'}]"], r"nope.txt does not exist")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "a"}] * 3)
    dpo = ["--model=lit_gpt5.tuning.dpo.DPOLitModule", "--data=lit_gpt5.data.preferences.PreferenceDataModule"]
    refused(["fit", *dpo, "--trainer.max_steps=1", f"--data.train_path={pairs}"], r"DPO starts from an instruction")
    ckpt = tmp_path / "sft.ckpt"
    save_checkpoint(GPT(GPTConfig.from_name("gpt-nano")), ckpt)
    refused(
        ["fit", *dpo, "--trainer.max_steps=1", f"--model.init_from={ckpt}", f"--data.train_path={pairs}"],
        r"pairs.jsonl line 1: .*no 'rejected'",
    )
    existing = tmp_path / "existing.txt"
    existing.write_text("keep me")
    refused(["sft", "preferences", "--text_path", str(book_path), "--out", str(existing)], r"is an existing file")
    assert existing.read_text() == "keep me"
