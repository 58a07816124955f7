"""Less unique text at the same budget (``train_fraction``) and documents only evaluated (``eval_only``): the two
knobs of the data-constrained study (how much one book holds; one book against three)."""

import itertools

import pytest
import torch

from lit_gpt5.data import GutenbergDataModule, TokenWindowDataModule
from lit_gpt5.errors import UserError
from lit_gpt5.training.module import GPTLitModule
from tests.helpers import quiet_trainer

# Tokens equal to their own positions (offset per document): a window's values say where it was cut from.
A, B = torch.arange(0, 4000), torch.arange(10_000, 13_000)


def split(**kwargs) -> TokenWindowDataModule:
    data = TokenWindowDataModule(block_size=16, batch_size=8, **kwargs)
    data.setup("fit")
    return data


def tokens_of(segments) -> torch.Tensor:
    return torch.cat(list(segments))


@pytest.mark.parametrize("split_kind", ["tail", "interleaved"])
def test_a_train_fraction_keeps_the_first_part_and_the_held_out_text(split_kind):
    whole = split(tokens=A, split=split_kind, interleave_blocks=20)
    quarter = split(tokens=A, split=split_kind, interleave_blocks=20, train_fraction=0.25)
    trained, kept = tokens_of(whole.train_segments), tokens_of(quarter.train_segments)
    assert len(kept) == round(0.25 * len(trained))
    assert torch.equal(kept, trained[: len(kept)])  # the first part of the training text, in text order
    assert torch.equal(tokens_of(quarter.val_segments), tokens_of(whole.val_segments))  # held-out text unchanged
    batches = itertools.islice(iter(quarter.train_dataset()), 50)
    drawn = torch.cat([torch.cat([x, y], 1).flatten() for x, y in batches])
    assert set(drawn.tolist()) <= set(kept.tolist())  # every window comes from the kept part


def test_documents_only_evaluated_are_never_trained_on_and_stay_out_of_val_loss(tmp_path):
    data = split(tokens={"a": A, "b": B}, eval_only=["b"])
    assert data.val_set_names == ["a", "b"] and data.eval_only_sets == ["b"]
    assert tokens_of(data.train_segments).max() < 10_000  # nothing of b
    torch.manual_seed(0)
    module = GPTLitModule(model_name="gpt-nano", n_layer=1, warmup_steps=1)
    trainer = quiet_trainer(tmp_path, max_steps=2, limit_val_batches=None, val_check_interval=2)
    trainer.fit(module, datamodule=split(tokens={"a": A, "b": B}, eval_only=["b"], val_batch_size=64))
    logged = trainer.callback_metrics
    assert logged["val/loss/b"] != logged["val/loss/a"]
    assert logged["val/loss"] == pytest.approx(logged["val/loss/a"].item(), abs=1e-6)  # b is reported, not mixed in


def test_books_only_evaluated(book_path, isolated_cache, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(book_path.read_text(encoding="utf-8")[200_000:400_000], encoding="utf-8")
    data = GutenbergDataModule(
        text_path=str(book_path), eval_text_paths=[str(other)], block_size=64, batch_size=4, train_fraction=0.5
    )
    data.prepare_data()
    data.setup("fit")
    assert data.val_set_names == [book_path.stem, "other"] and data.eval_only_sets == ["other"]
    alone = GutenbergDataModule(text_path=str(book_path), block_size=64, batch_size=4)
    alone.setup("fit")
    assert torch.equal(tokens_of(data.val_sets[book_path.stem]), tokens_of(alone.val_segments))
    assert len(tokens_of(data.train_segments)) == round(0.5 * len(tokens_of(alone.train_segments)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tokens=A, train_fraction=0.0), "train_fraction must be between 0 and 1"),
        (dict(tokens=A, train_fraction=1.5), "train_fraction must be between 0 and 1"),
        (dict(tokens=A, train_fraction=0.001), "--data.train_fraction 0.001 leaves 4 training tokens"),
        (dict(tokens={"a": A, "b": B}, eval_only=["c"]), "--data.eval_only names c, not among the documents"),
        (dict(tokens={"a": A, "b": B}, eval_only=["a", "b"]), "names every document: leave at least one"),
        (dict(store="somewhere", train_fraction=0.5), "not on a --data.store"),
    ],
)
def test_bad_data_constrained_settings_are_one_line(kwargs, message):
    with pytest.raises(UserError, match=message):
        split(**kwargs)


def test_an_evaluated_book_named_as_a_trained_one_is_refused(book_path):
    with pytest.raises(UserError, match="trained on and evaluated must have distinct names"):
        GutenbergDataModule(text_path=str(book_path), eval_text_paths=[str(book_path)])


def test_what_is_evaluated_does_not_change_what_is_trained(tmp_path):
    """The study compares runs evaluated on other books with the sampling study's runs evaluated on one."""

    def fit(tokens: dict, eval_only: list[str]) -> dict:
        torch.manual_seed(0)
        module = GPTLitModule(model_name="gpt-nano", n_layer=1, warmup_steps=1, dropout=0.1)
        trainer = quiet_trainer(None, max_steps=3, limit_val_batches=None, val_check_interval=1)
        trainer.fit(module, datamodule=split(tokens=tokens, eval_only=eval_only, val_batch_size=64))
        return module.model.state_dict()

    alone, beside = fit({"a": A}, []), fit({"a": A, "b": B}, ["b"])
    assert all(torch.equal(alone[k], beside[k]) for k in alone)
