"""Checkpoints written by the code of 0.1 (the last commit before the package was split into subpackages, taken from
git history and run as it was) resume, convert and generate with today's code.

Each of the four kinds of run saves its own class paths inside its checkpoint (``lit_gpt5.lit_module.GPTLitModule``,
``lit_gpt5.sft.SFTDataModule``, ``lit_gpt5.dpo.DPOLitModule``, ``lit_gpt5.rloo.PromptDataModule``, ...): they are
read through ``lit_gpt5.old_paths``. Where the computation did not change, the result must not either: a pretraining
run started by the old code and finished by the new one ends with the weights of the old code's uninterrupted run,
bit for bit, and greedy generation from an old checkpoint prints what the old code printed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from lit_gpt5.old_paths import LitGPT5DeprecationWarning
from tests.conftest import REPO
from tests.helpers import write_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("default::lit_gpt5.old_paths.LitGPT5DeprecationWarning")]

OLD_COMMIT = "061db38b86a97fa5fccbec1c6e94e6623745f2bf"  # main before the 0.2 layout: lit_gpt5/lit_module.py and co.
TINY_MODEL = ["--model.n_layer=1", "--model.n_embd=16", "--model.n_head=2", "--model.warmup_steps=1"]
TRAINER = ["--trainer.accelerator=cpu", "--trainer.precision=32-true", "--trainer.enable_progress_bar=false",
           "--trainer.enable_model_summary=false", "--trainer.limit_val_batches=1", "--trainer.val_check_interval=2",
           "--sampler.max_new_tokens=0", "--seed_everything=7"]  # fmt: skip
RECORDS = [{"instruction": f"Name the number {i}.", "output": f"It is {i}."} for i in range(40)]
PAIRS = [{"prompt": f"Count to {i}.", "chosen": " ".join(map(str, range(1, i + 2))), "rejected": "No."}
         for i in range(24)]  # fmt: skip


@pytest.fixture(scope="module")
def old_code(tmp_path_factory) -> Path:
    """The package as it was at ``OLD_COMMIT``, out of git history (a folder to put first on ``PYTHONPATH``)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("the old code comes from git history: this needs a git checkout")
    done = subprocess.run(["git", "archive", OLD_COMMIT, "lit_gpt5"], cwd=REPO, capture_output=True)
    if done.returncode != 0:
        message = f"commit {OLD_COMMIT} is not in this checkout's history: {done.stderr.decode()[-300:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("old_code")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        tar.extractall(root, filter="data")
    assert (root / "lit_gpt5" / "lit_module.py").exists()
    return root


# Runs several commands of the old package in one process (one start-up instead of one per command), each output
# after a marker line, so that each command's output can be told apart.
OLD_DRIVER = """
import json, sys
from lit_gpt5.__main__ import main
for name, argv in json.loads(open(sys.argv[1]).read()):
    print(f"=== {name}", flush=True)
    main(argv)
    sys.stdout.flush()
"""


def run_old(old_code: Path, commands: list[tuple[str, list[str]]], cwd: Path) -> dict[str, str]:
    """``lit-gpt5 <argv>`` of each (name, argv) with the old package, one after the other in a process of its own;
    each command's stdout by name."""
    script = cwd / "commands.json"
    script.write_text(json.dumps(commands))
    env = {**os.environ, "PYTHONPATH": str(old_code)}
    done = subprocess.run([sys.executable, "-c", OLD_DRIVER, str(script)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    parts = done.stdout.split("=== ")[1:]
    return {part.split("\n", 1)[0]: part.split("\n", 1)[1] for part in parts}


def run_new(args: list[str], capsys) -> str:
    """``lit-gpt5 <args>`` with today's package, in this process; its stdout."""
    from lit_gpt5.__main__ import main

    capsys.readouterr()
    main(args)
    return capsys.readouterr().out


def last(root: Path) -> Path:
    (path,) = root.glob("lightning_logs/version_*/checkpoints/last.ckpt")
    return path


@pytest.fixture(scope="module")
def old_runs(old_code, shared_dir, tmp_path_factory) -> dict[str, object]:
    """Checkpoints of the four kinds of run, written by the old code (with a book, records, pairs and prompts), and
    what its generate printed."""
    work = tmp_path_factory.mktemp("old_runs")
    book = shared_dir / "data" / "gutenberg" / "829-0.txt"
    # lr_decay_steps: the same schedule for the run of 2 steps and the run of 4, so that they can be compared.
    pretrain = ["fit", "--model.model_name=gpt-nano", *TINY_MODEL, "--model.lr_decay_steps=4", *TRAINER,
                f"--data.text_path={book}", "--data.block_size=16", "--data.batch_size=4",
                "--data.val_batch_size=64"]  # fmt: skip
    base = work / "half" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    sft = ["fit", f"--model.init_from={base}", "--model.lora_r=2", "--model.warmup_steps=1", *TRAINER,
           "--data=lit_gpt5.sft.SFTDataModule", f"--data.train_path={write_jsonl(work / 'sft.jsonl', RECORDS)}",
           "--data.max_length=16", "--data.batch_size=4", "--data.template=plain"]  # fmt: skip
    # From the pretrained base: the old code could not start DPO from a LoRA checkpoint (its merged weights came back
    # frozen; tests/weights/test_checkpoints.py now pins that they do not).
    dpo = ["fit", "--model=lit_gpt5.dpo.DPOLitModule", f"--model.init_from={base}",
           "--model.precompute_reference=true", "--model.warmup_steps=1", *TRAINER,
           "--data=lit_gpt5.dpo.PreferenceDataModule", f"--data.train_path={write_jsonl(work / 'pairs.jsonl', PAIRS)}",
           "--data.max_length=24", "--data.batch_size=2", "--data.template=plain"]  # fmt: skip
    books = [str(shared_dir / "data" / "gutenberg" / f"{n}-0.txt") for n in (829, 1342, 84)]
    pairs = ["reward", "pairs", "--ckpt", str(base), "--text_paths", *books, "--target", "829-0", "--out",
             str(work / "reward"), "--train_prompts", "12", "--eval_prompts", "6", "--samples", "2",
             "--max_new_tokens", "4", "--prompt_tokens", "4"]  # fmt: skip
    rloo = ["fit", "--model=lit_gpt5.rloo.RLOOLitModule", f"--model.init_from={base}", "--model.warmup_steps=1",
            f"--model.reward={work / 'reward' / 'reward.json'}", "--model.samples_per_prompt=2",
            "--model.max_new_tokens=4", "--model.val_samples_per_prompt=1", *TRAINER,
            "--data=lit_gpt5.rloo.PromptDataModule", f"--data.train_path={work / 'reward' / 'train_prompts.jsonl'}",
            f"--data.val_path={work / 'reward' / 'eval_prompts.jsonl'}", "--data.batch_size=2"]  # fmt: skip
    sft_ckpt = work / "sft" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    ask = ["generate", "--ckpt", str(sft_ckpt), "--instruction", "Name the number 3.", "--max_new_tokens", "8",
           "--temperature", "0", "--device", "cpu"]  # fmt: skip
    printed = run_old(old_code, [
        ("whole", [*pretrain, "--trainer.max_steps=4", f"--trainer.default_root_dir={work / 'whole'}"]),
        ("half", [*pretrain, "--trainer.max_steps=2", f"--trainer.default_root_dir={work / 'half'}"]),
        ("sft", [*sft, "--trainer.max_steps=2", f"--trainer.default_root_dir={work / 'sft'}"]),
        ("dpo", [*dpo, "--trainer.max_steps=2", f"--trainer.default_root_dir={work / 'dpo'}"]),
        ("pairs", pairs),
        ("rloo", [*rloo, "--trainer.max_steps=2", f"--trainer.default_root_dir={work / 'rloo'}"]),
        ("generate", ask),
    ], work)  # fmt: skip
    return {"work": work, "pretrain": pretrain, "sft": sft, "dpo": dpo, "rloo": rloo, "ask": ask,
            "generated": printed["generate"]}  # fmt: skip


def model_weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("model.")}


def test_an_old_pretraining_run_finishes_with_the_new_code_as_the_old_code_would_have(old_runs, capsys):
    work = old_runs["work"]
    ckpt = last(work / "half")
    hparams = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hparams["_class_path"] == "lit_gpt5.lit_module.GPTLitModule"  # written by the old code, with its paths
    said = "lit_gpt5.lit_module.GPTLitModule moved to lit_gpt5.training.module.GPTLitModule"
    with pytest.warns(LitGPT5DeprecationWarning, match=said):
        run_new([*old_runs["pretrain"], "--trainer.max_steps=4", f"--ckpt_path={ckpt}",
                 f"--trainer.default_root_dir={work / 'resumed'}"], capsys)  # fmt: skip
    resumed, whole = model_weights(last(work / "resumed")), model_weights(last(work / "whole"))
    assert resumed.keys() == whole.keys()
    assert all(torch.equal(resumed[k], whole[k]) for k in whole), "old + new differs from the old run alone"


@pytest.mark.parametrize("kind", ["sft", "dpo", "rloo"])
def test_old_lora_dpo_and_rloo_runs_resume(old_runs, kind, capsys):
    work = old_runs["work"]
    ckpt = last(work / kind)
    run_new([*old_runs[kind], "--trainer.max_steps=3", f"--ckpt_path={ckpt}",
             f"--trainer.default_root_dir={work / (kind + '-resumed')}"], capsys)  # fmt: skip
    resumed = torch.load(last(work / (kind + "-resumed")), map_location="cpu", weights_only=True)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 3 and resumed["lit_gpt5"]["global_batches"] > saved["lit_gpt5"]["global_batches"]
    assert resumed["lit_gpt5"]["rng_seed"] == saved["lit_gpt5"]["rng_seed"]
    if kind == "dpo":  # the precomputed reference log-probabilities travel on, not computed again
        for split, table in saved["lit_gpt5"]["reference_logps"].items():
            assert torch.equal(resumed["lit_gpt5"]["reference_logps"][split], table)
    if kind == "sft":
        assert resumed["lit_gpt5"]["lora"] == saved["lit_gpt5"]["lora"] and resumed["lit_gpt5"]["lora"]["r"] == 2


def test_old_checkpoints_convert_and_generate_as_before(old_runs, capsys):
    work = old_runs["work"]
    sft, base = last(work / "sft"), last(work / "half")
    assert run_new(old_runs["ask"], capsys) == old_runs["generated"]  # greedy: the very same tokens
    run_new(["convert", "to-hf", "--ckpt", str(base), "--out", str(work / "hf")], capsys)
    run_new(["convert", "to-peft", "--ckpt", str(sft), "--out", str(work / "peft")], capsys)
    config = json.loads((work / "hf" / "config.json").read_text())
    assert (config["n_layer"], config["n_embd"]) == (1, 16)
    assert json.loads((work / "peft" / "adapter_config.json").read_text())["r"] == 2
    from lit_gpt5.weights.checkpoints import load_model
    from lit_gpt5.weights.hf import load_hf

    from_ckpt, from_hf = load_model(base), load_hf(work / "hf")
    x = torch.randint(0, 50257, (1, 8))
    torch.testing.assert_close(from_ckpt(x), from_hf(x), rtol=0, atol=0)
