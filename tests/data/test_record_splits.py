"""Record data split three ways: training records, validation records that select (the best checkpoint), test records
that report. Selection and report never share a record."""

import re

import pytest
import torch

from lit_gpt5.cli import main
from lit_gpt5.data.instructions import SFTDataModule
from lit_gpt5.data.preferences import PreferenceDataModule
from lit_gpt5.data.records import split_by_hash
from lit_gpt5.errors import UserError
from lit_gpt5.model.tokenizer import get_tokenizer
from tests.helpers import write_jsonl

TOK = get_tokenizer()
RECORDS = [{"instruction": f"What is item {i}?", "output": f"It is item number {i}."} for i in range(60)]


def texts(dataset) -> set[str]:
    return {TOK.decode(ids.tolist()) for ids, _ in dataset.examples}


def test_three_splits_are_disjoint_exact_and_leave_the_validation_records_alone():
    key = lambda r: [r["instruction"], r["output"]]  # noqa: E731
    two = split_by_hash(RECORDS, 0.1, 0, key)
    three = split_by_hash(RECORDS, 0.1, 0, key, test_fraction=0.2)
    assert (len(three.train), len(three.val), len(three.test)) == (42, 6, 12)
    assert two.test == [] and two.val == three.val  # asking for a test split does not move the validation records
    ids = [{r["instruction"] for r in split} for split in three]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert set.union(*ids) == {r["instruction"] for r in RECORDS}
    # by hash, not position: the same test records from the file in another order
    assert {r["instruction"] for r in split_by_hash(RECORDS[::-1], 0.1, 0, key, 0.2).test} == ids[2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"test_fraction": 1.5}, r"test_fraction must be between 0 and 1"),
        ({"test_fraction": -0.1}, r"test_fraction must be between 0 and 1"),
        ({"test_fraction": 0.2, "test_path": "t.jsonl"}, r"--data.test_path and --data.test_fraction 0.2 .*: pass one"),
    ],
)
def test_bad_test_split_arguments_are_one_line(kwargs, message):
    with pytest.raises(UserError, match=message):
        SFTDataModule(train_path="d.jsonl", **kwargs)


def test_fractions_that_leave_nothing_to_train_on_are_refused():
    with pytest.raises(UserError, match=r"val_fraction=0.5 and test_fraction=0.5 leave an empty split of 60"):
        split_by_hash(RECORDS, 0.5, 0, lambda r: [r["instruction"]], test_fraction=0.5)
    with pytest.raises(UserError, match=r"test_fraction=0.001 leave an empty split"):
        split_by_hash(RECORDS, 0.1, 0, lambda r: [r["instruction"]], test_fraction=0.001)


def test_the_data_module_tests_on_its_test_records_only(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    dm = SFTDataModule(train_path=str(path), val_fraction=0.1, test_fraction=0.2, max_length=64, batch_size=4)
    dm.setup("fit")
    train, val, test = texts(dm.train_set), texts(dm.val_set), texts(dm.test_set)
    assert (len(train), len(val), len(test)) == (42, 6, 12)
    assert not (train & val) and not (train & test) and not (val & test)
    tested = set()
    for x, y in dm.test_dataloader():
        for row_x, row_y in zip(x, y, strict=True):
            tested.add(TOK.decode(torch.cat([row_x[:1], row_y[row_y >= 0]]).tolist()))
    assert len(tested) == 12 and all(any(t.endswith(s.split("\n")[-1]) for t in tested) for s in test)
    # a file for the test split works the same, and the validation records stay as they were
    test_path = write_jsonl(tmp_path / "t.jsonl", [{"instruction": "Held apart?", "output": "Yes."}])
    dm2 = SFTDataModule(train_path=str(path), val_fraction=0.1, test_path=str(test_path), max_length=64)
    dm2.setup("fit")
    assert texts(dm2.val_set) == val and len(dm2.train_set) == 54 and len(dm2.test_set) == 1


def test_without_a_test_split_test_refuses_rather_than_report_on_the_selecting_records(tmp_path):
    dm = SFTDataModule(train_path=str(write_jsonl(tmp_path / "d.jsonl", RECORDS)), max_length=64)
    dm.setup("fit")
    with pytest.raises(UserError, match=r"^test needs test records apart from the validation ones.*test_fraction"):
        dm.test_dataloader()


def test_instruction_tuning_and_preference_tuning_hold_out_the_same_prompts_for_the_test(tmp_path):
    pairs = [{"instruction": r["instruction"], "chosen": r["output"], "rejected": "No."} for r in RECORDS]
    sft = SFTDataModule(train_path=str(write_jsonl(tmp_path / "s.jsonl", RECORDS)), val_fraction=0.1, test_fraction=0.2)
    dpo = PreferenceDataModule(train_path=str(write_jsonl(tmp_path / "p.jsonl", pairs)), test_fraction=0.2)
    sft_splits, dpo_splits = sft.load_splits(), dpo.load_splits()
    for sft_part, dpo_part in zip(sft_splits[1:], dpo_splits[1:], strict=True):  # validation, then test
        assert {r["instruction"] for r in sft_part} == {r["instruction"] for r in dpo_part}


def test_fit_selects_on_validation_and_test_best_reports_on_disjoint_test_records(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    common = [
        "--model.model_name=gpt-nano", "--model.n_layer=1", "--model.n_embd=32", "--model.n_head=2",
        "--data.class_path=lit_gpt5.data.instructions.SFTDataModule", f"--data.train_path={path}",
        "--data.max_length=64", "--data.batch_size=8", "--data.val_fraction=0.2", "--data.test_fraction=0.2",
        "--data.template=plain",
        "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}",
    ]  # fmt: skip
    main(["fit", *common, "--trainer.max_steps=12", "--trainer.val_check_interval=4", "--sampler.max_new_tokens=0"])
    checkpoints = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    best = next(p for p in checkpoints.glob("step*.ckpt"))
    selected_on_val = float(re.search(r"val_loss(\d+\.\d+)", best.name).group(1))
    capsys.readouterr()
    main(["test", *common, "--ckpt_path=best"])
    out = capsys.readouterr().out
    assert f"--ckpt_path best: {best}" in out
    reported = float(re.search(r"test/loss\s*│?\s*(\d+\.\d+)", out).group(1))

    # the figure is the best checkpoint's mean response loss over the test records, which validation never saw
    from lit_gpt5.training.module import GPTLitModule

    module = GPTLitModule.load_from_checkpoint(best, weights_only=True).eval()
    dm = SFTDataModule(train_path=str(path), val_fraction=0.2, test_fraction=0.2, max_length=64, template="plain")
    dm.setup("test")
    assert not (texts(dm.test_set) & texts(dm.val_set)) and not (texts(dm.test_set) & texts(dm.train_set))
    with torch.no_grad():
        sums = [module.loss_sum(x, y) for x, y in dm.test_dataloader()]
    expected = float(sum(s for s, _ in sums) / sum(n for _, n in sums))
    assert reported == pytest.approx(expected, abs=2e-4)
    assert reported != pytest.approx(selected_on_val, abs=1e-4)


def test_test_best_without_a_run_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"--ckpt_path best: no best checkpoint .* in any run under"):
        main(["test", "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}", "--ckpt_path=best"])
