"""Options and data that used to be taken silently or to end in a traceback: a vocabulary too small for the data, a
LoRA rank larger than the layers, LoRA targets that are empty or without a rank, sampling settings the sampler took
and generate refused, and a resume on a store that changed under the same path."""

from __future__ import annotations

import json

import pytest
import torch

from lit_gpt5.errors import UserError
from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.weights.checkpoints import save_checkpoint

FIT = ["fit", "--trainer.max_steps=1", "--trainer.accelerator=cpu", "--sampler.max_new_tokens=0"]


@pytest.fixture(scope="module")
def small_vocab_ckpt(tmp_path_factory):
    """A model whose vocabulary (1,000 ids) is smaller than GPT-2's: what a text tokenized with GPT-2 overflows."""
    path = tmp_path_factory.mktemp("vocab") / "small.ckpt"
    save_checkpoint(GPT(GPTConfig(vocab_size=1000, block_size=64, n_layer=1, n_head=2, n_embd=16)), path)
    return path


def test_token_ids_beyond_the_models_vocabulary_are_refused_before_the_run(refused, small_vocab_ckpt, book_path):
    refused([*FIT, f"--model.init_from={small_vocab_ckpt}", f"--data.text_path={book_path}", "--data.block_size=16"],
            r"the data holds token ids up to 50,2\d\d, .*vocabulary has 1,000 ids .*tokenize")  # fmt: skip


def test_token_ids_of_a_store_beyond_the_models_vocabulary_are_refused(refused, small_vocab_ckpt, book_path, tmp_path):
    from lit_gpt5.data.store_build import build, sources

    build(tmp_path / "s", sources(text_paths=[str(book_path)]), progress=False)
    refused([*FIT, f"--model.init_from={small_vocab_ckpt}", f"--data.store={tmp_path / 's'}", "--data.block_size=16"],
            r"token ids up to 50,256, .*vocabulary has 1,000")  # fmt: skip


def test_a_lora_rank_larger_than_its_layers_is_one_line_and_allocates_nothing(refused):
    from lit_gpt5.model.lora import apply_lora

    model = GPT(GPTConfig.from_name("gpt-nano", n_layer=1))
    with pytest.raises(UserError, match=r"lora_r 1000000000: .* at most 48 here \(c_attn, 48 x 144\)"):
        apply_lora(model, r=10**9)
    refused(["fit", "--model.model_name=gpt-nano", "--model.lora_r=1000000000", "--trainer.max_steps=1"],
            r"--model.lora_r 1000000000: .* at most 48 here")  # fmt: skip
    refused(["memory", "--model", "gpt2", "--lora_r", "1000000000"], r"--lora_r 1000000000: .* at most 768 here")


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["--model.lora_r=4", "--model.lora_targets=[]"], r"--model.lora_targets is empty"),
        (["--model.lora_targets=[c_attn]"], r"--model.lora_targets .* without --model.lora_r"),
    ],
)
def test_lora_targets_are_never_ignored(refused, args, pattern, book_path):
    refused([*FIT, "--model.model_name=gpt-nano", "--model.n_layer=1", f"--data.text_path={book_path}", *args], pattern)


@pytest.mark.parametrize(
    "setting, value, pattern",
    [
        ("top_p", "1.5", r"top_p must be in \(0, 1\], got 1.5"),
        ("top_k", "0", r"top_k must be a positive integer, got 0"),
        ("temperature", "-1", r"temperature must be a finite number >= 0"),
    ],
)
def test_the_sampler_and_generate_check_sampling_settings_alike(refused, setting, value, pattern, tmp_path, book_path):
    refused([*FIT, "--model.model_name=gpt-nano", "--model.n_layer=1", f"--data.text_path={book_path}",
             f"--sampler.{setting}={value}"], rf"--sampler.{pattern}")  # fmt: skip
    ckpt = tmp_path / "nano.ckpt"
    save_checkpoint(GPT(GPTConfig.from_name("gpt-nano", n_layer=1)), ckpt)
    refused(["generate", "--ckpt", str(ckpt), f"--{setting}", value], rf"--{pattern}")


@pytest.mark.slow  # two short fits
def test_a_resume_on_a_store_that_changed_is_refused(books_three, tmp_path, refused, quiet_lightning, capsys):
    from lit_gpt5.cli import main
    from lit_gpt5.data.store_build import build, sources

    store, other = tmp_path / "store", tmp_path / "other"
    build(store, sources(text_paths=[str(books_three[0])]), progress=False)
    build(other, sources(text_paths=[str(books_three[0])]), progress=False)
    run = ["fit", "--model.model_name=gpt-nano", "--model.n_layer=1", "--data.block_size=16", "--data.batch_size=2",
           "--trainer.accelerator=cpu", "--sampler.max_new_tokens=0", "--trainer.enable_progress_bar=false",
           "--trainer.limit_val_batches=1", f"--trainer.default_root_dir={tmp_path / 'runs'}"]  # fmt: skip
    main([*run, f"--data.store={store}", "--trainer.max_steps=2"])
    (ckpt,) = (tmp_path / "runs").rglob("last.ckpt")
    saved = torch.load(ckpt, weights_only=True)["GutenbergDataModule"]
    assert len(saved["store_identity"]) == 64
    resume = [*run, f"--ckpt_path={ckpt}", "--trainer.max_steps=4"]
    refused([*resume, f"--data.store={other}"], r"--data.store .*other differs from the .*store of --ckpt_path")
    build(store, sources(text_paths=[str(books_three[1])]), progress=False)  # the same store gains a book
    refused([*resume, f"--data.store={store}"], r"does not hold what the checkpoint's run trained on")
    manifest = json.loads((store / "manifest.json").read_text())
    assert len(manifest["documents"]) == 2


@pytest.fixture(scope="module")
def books_three(shared_dir):
    return [shared_dir / "data" / "gutenberg" / name for name in ("84-0.txt", "1342-0.txt")]
