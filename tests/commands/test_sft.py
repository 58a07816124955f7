"""The instruction-tuning commands, and tuning end to end: records in, the tuned answers out."""

import lightning as L
import pytest
import torch

from lit_gpt5.commands.sft import main
from lit_gpt5.data.instructions import SFTDataModule
from lit_gpt5.training.module import GPTLitModule
from tests.data.test_instructions import RECORDS
from tests.helpers import write_jsonl


@pytest.mark.slow
def test_tiny_model_reproduces_tuned_responses(tmp_path, capsys):
    records = [
        {"instruction": "Where did Gulliver land first?", "output": "Lilliput."},
        {"instruction": "Who are the giants?", "output": "The people of Brobdingnag."},
        {"instruction": "What flies?", "input": "An island", "output": "Laputa, the flying island."},
        {"instruction": "Who are the wise horses?", "output": "The Houyhnhnms."},
    ]
    path = write_jsonl(tmp_path / "tiny.jsonl", records)
    dm = SFTDataModule(train_path=path, val_path=path, max_length=64, batch_size=4, template="plain")
    torch.manual_seed(0)
    module = GPTLitModule(model_name="gpt-nano", n_layer=2, n_embd=64, n_head=2, learning_rate=1e-2, warmup_steps=5)
    trainer = L.Trainer(
        max_steps=120,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=120,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=dm)
    assert trainer.callback_metrics["val/loss"] < 0.05
    ckpt = tmp_path / "tuned.ckpt"
    trainer.save_checkpoint(ckpt)

    from lit_gpt5.commands.generate import main as generate_main

    capsys.readouterr()
    for record in records:
        generate_main(
            [
                "--ckpt",
                str(ckpt),
                "--instruction",
                record["instruction"],
                "--input",
                record.get("input", ""),
                "--temperature",
                "0",
                "--max_new_tokens",
                "30",
            ]
        )  # the template ("plain") comes from the checkpoint
        assert capsys.readouterr().out == record["output"] + "\n"  # only the response, stopped at <|endoftext|>


def test_show_marks_supervised_tokens(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", RECORDS[:2])
    main(["show", "--train_path", path, "-n", "2", "--color", "never"])
    out = capsys.readouterr().out
    assert "=== example 0:" in out and "=== example 1:" in out
    assert "⟦ Paris⟧" not in out and "⟦Paris⟧⟦.⟧⟦<|endoftext|>⟧" in out
    assert "### Instruction:\nName the capital of France." in out
