"""The data modules satisfy the written contract (``lit_gpt5.data.protocols``) that the rest of the package reads,
and the record modules are siblings on one base, forwarding its arguments without restating them."""

import inspect

import torch

from lit_gpt5.data import (
    GutenbergDataModule,
    HeldOutSets,
    RecordDataset,
    TokenWindowDataModule,
    TrainingData,
    WindowData,
)
from lit_gpt5.data.gulliver import GulliverInstructDataModule, GulliverPreferenceDataModule
from lit_gpt5.data.instructions import SFTDataModule, SFTDataset
from lit_gpt5.data.preferences import PreferenceDataModule, PreferenceDataset
from lit_gpt5.data.record_module import RecordDataModule
from lit_gpt5.model.tokenizer import get_tokenizer


def test_window_modules_satisfy_window_data(book_path):
    tokens = TokenWindowDataModule(torch.randint(0, 100, (5000,)), block_size=16, batch_size=2)
    tokens.setup("fit")
    books = GutenbergDataModule(text_path=str(book_path), block_size=32)
    books.setup("fit")
    for dm in (tokens, books):
        assert isinstance(dm, WindowData) and isinstance(dm, TrainingData) and isinstance(dm, HeldOutSets)
        assert dm.window_starts.block_size == dm.block_size


def test_record_modules_are_siblings_and_satisfy_training_data(book_path):
    assert SFTDataModule.__bases__ == (RecordDataModule,) and PreferenceDataModule.__bases__ == (RecordDataModule,)
    for dm in (
        GulliverInstructDataModule(text_path=str(book_path)),
        GulliverPreferenceDataModule(text_path=str(book_path)),
    ):
        assert isinstance(dm, TrainingData) and dm.block_size == 256
        dm.setup("fit")
        assert isinstance(dm.train_set, RecordDataset) and isinstance(dm.val_set, RecordDataset)
        batch = dm.train_set.collate([dm.train_set[0], dm.train_set[1]])
        assert batch[0].shape[0] == (2 if isinstance(dm, SFTDataModule) else 4)  # pairs: chosen and rejected rows


def test_datasets_satisfy_record_dataset():
    tok = get_tokenizer()
    sft = SFTDataset([{"instruction": "Say hi.", "output": "Hi."}], tok, 64)
    pairs = PreferenceDataset([{"prompt": "Say hi.", "chosen": "Hi.", "rejected": "No."}], tok, 64)
    for ds in (sft, pairs):
        assert isinstance(ds, RecordDataset) and len(ds.lengths()) == len(ds) == 1


def test_subclasses_forward_their_parents_arguments_and_keep_the_defaults_that_differ():
    def params(cls):
        return inspect.signature(cls.__init__).parameters

    assert "kwargs" in params(GutenbergDataModule) and "block_size" not in params(GutenbergDataModule)
    assert params(PreferenceDataModule)["val_fraction"].default == 0.1  # SFT's is 0.05
    assert params(GulliverInstructDataModule)["template"].default == "plain"
    dm = GulliverPreferenceDataModule(batch_size=3, seed=5)  # forwarded through two levels of **kwargs
    assert (dm.batch_size, dm.hparams.seed, dm.hparams.val_fraction, dm.max_length) == (3, 5, 0.1, 256)
    sft = SFTDataModule(train_path="x.jsonl", mask_prompt=False, max_length=64)
    assert sft.hparams.mask_prompt is False and sft.hparams.max_length == 64 and sft.hparams.template == "alpaca"
