"""Precision chosen by the hardware: ``auto`` resolves by what the device computes natively, says so in the start-up
line, and an explicit bf16 on a CPU that emulates it runs after a one-line warning."""

from __future__ import annotations

import re

import pytest

from lit_gpt5.cli import main
from lit_gpt5.training import trainer as trainer_module
from lit_gpt5.training.trainer import Trainer, resolve_precision, warn_if_slow
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("native", "expected", "why"),
    [(True, "bf16-mixed", "this CPU computes bf16 natively"), (False, "32-true", "this CPU has no native bf16")],
)
def test_auto_on_a_cpu_follows_native_bf16(native, expected, why):
    chosen, reason = resolve_precision("auto", "cpu", native_bf16=native)
    assert chosen == expected and why in reason
    assert resolve_precision("bf16-mixed", "cpu", native_bf16=native) == ("bf16-mixed", None)  # explicit: Lightning's
    assert resolve_precision("32-true", "cpu", native_bf16=native) == ("32-true", None)


@pytest.mark.parametrize("native", [True, False])
def test_the_trainer_resolves_auto_at_its_one_seam_and_notes_why(native, monkeypatch):
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: native)
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    assert trainer.precision == ("bf16-mixed" if native else "32-true")
    note = "bf16-mixed (auto: this CPU computes bf16 natively" if native else "32-true (auto: this CPU has no native"
    assert trainer.precision_note.startswith(note)
    explicit = Trainer(accelerator="cpu", precision="32-true", logger=False, enable_checkpointing=False)
    assert explicit.precision == explicit.precision_note == "32-true"


def test_explicit_bf16_on_an_emulating_cpu_warns_in_one_line_and_still_runs(monkeypatch, capsys):
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: False)
    trainer = Trainer(accelerator="cpu", precision="bf16-mixed", logger=False, enable_checkpointing=False)
    assert trainer.precision == "bf16-mixed"
    err = [line for line in capsys.readouterr().err.splitlines() if "lit_gpt5" in line]
    assert len(err) == 1 and re.search(r"about 10x slower than float32; pass --trainer.precision auto", err[0])
    assert warn_if_slow("bf16-mixed", "cpu", native_bf16=True) is None  # nothing to say where bf16 is native
    assert warn_if_slow("32-true", "cpu", native_bf16=False) is None


def tiny_fit(book_path, root, *extra) -> list[str]:
    return [
        "fit",
        "--model.model_name=gpt-nano",
        "--model.n_layer=1",
        "--model.n_embd=16",
        "--model.n_head=2",
        "--model.warmup_steps=1",
        f"--data.text_path={book_path}",
        "--data.block_size=16",
        "--data.batch_size=4",
        "--data.val_batch_size=64",
        "--trainer.limit_val_batches=2",
        "--trainer.max_steps=4",
        "--trainer.val_check_interval=2",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}",
        "--sampler.max_new_tokens=0",
        *extra,
    ]


def val_losses(out: str) -> list[str]:
    return re.findall(r"step \d+: val/loss (\S+)", out)


def test_the_start_up_line_names_the_precision_and_auto_equals_float32_there(book_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: False)  # a CPU without native bf16
    main(tiny_fit(book_path, tmp_path / "auto"))  # the default: auto
    out = capsys.readouterr().out
    assert "lit_gpt5: precision 32-true (auto: this CPU has no native bf16); estimated memory" in out
    main(tiny_fit(book_path, tmp_path / "fp32", "--trainer.precision=32-true"))
    explicit = capsys.readouterr().out
    assert "lit_gpt5: precision 32-true; estimated memory" in explicit
    assert len(val_losses(out)) == 3 and val_losses(out) == val_losses(explicit)  # the same run, bit for bit


def test_configs_and_defaults_say_auto(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--print_config"])
    assert "precision: auto" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "configs" / "cpu-demo.yaml"), "--print_config"])
    assert "precision: auto" in capsys.readouterr().out
