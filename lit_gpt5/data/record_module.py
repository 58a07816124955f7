"""``RecordDataModule``: what instruction and preference data modules share, written once.

Records come from a JSON or JSONL file (or, for the built-in sets, are derived from a book), are validated with
errors naming the file, line and field, split three ways by hash (or read from separate files): training records,
validation records that select (the best checkpoint, a learning rate) and test records that report, never seen by
the selection; tokenized into a ``RecordDataset`` before the run starts, and batched in shuffled epochs bucketed by
length. ``SFTDataModule`` and
``PreferenceDataModule`` are siblings on this base; each says what one of its records is and nothing more:

* ``record_kind``: how messages name a record ("instruction", "preference");
* ``read(path)``: the validated records of a file, as dicts;
* ``held_out_fields``: the fields the held-out choice hashes (the same prompt and answer are held out by both, so a
  model is never preference-tuned on the questions instruction tuning held out, for validation or for the test);
* ``build_dataset(records, tokenizer, train)``: the tokenized ``RecordDataset``.
"""

from __future__ import annotations

import os

import lightning as L
from torch.utils.data import DataLoader

from lit_gpt5.data.batching import SFTBatches, eval_batches
from lit_gpt5.data.protocols import RecordDataset
from lit_gpt5.data.records import Splits, split_by_hash
from lit_gpt5.data.streams import batch_loader, check_fraction, check_positive, trainer_position
from lit_gpt5.errors import UserError
from lit_gpt5.log import get_logger
from lit_gpt5.model.prompts import check_template
from lit_gpt5.resume.state import global_batches_trained

log = get_logger(__name__)


class RecordDataModule(L.LightningDataModule):
    """Records from JSON or JSONL files, tokenized, split into training, validation and test records by hash, and
    batched by length.

    Args:
        train_path: the records (a JSON array, or one JSON object per line).
        val_path: validation records; without it, ``val_fraction`` of ``train_path`` is held out (chosen by hash).
        val_fraction: share of the records held out for validation when there is no ``val_path``.
        max_length: longest example (or side of a pair) in tokens; at most the model's positions (GPT-2: 1024).
        batch_size: records per micro-batch (per device).
        val_batch_size: records per validation batch; defaults to ``batch_size``.
        template: prompt template name (see ``lit_gpt5.model.prompts.TEMPLATES``) or a format string.
        bucket_by_length: batch records of similar length together, which wastes far less compute on padding.
        num_workers: DataLoader worker processes.
        seed: seed of the shuffling and of the held-out choice.
        packing: pack several records into each training row of ``max_length`` positions instead of padding each
            to the longest of its batch: positions restart and attention stays within each record, so the loss and
            the gradients are those of the padded batch (tested), with far less padding. ``batch_size`` then counts
            rows. A preference pair keeps its two sides in the same row. Validation stays padded.
        test_path: test records, which ``test`` reports on; without it, ``test_fraction`` of ``train_path`` is held
            out for the test (by the same hash, apart from the validation records).
        test_fraction: share of the records held out for the test when there is no ``test_path``; 0 (the default)
            holds none out, and ``test`` then refuses: reporting on the records that chose the checkpoint would
            report a selected figure. The validation records do not change with it.
    """

    record_kind = "record"
    batch_kind = "tokens"
    held_out_fields: tuple[str, ...] = ()

    def __init__(
        self,
        train_path: str | None = None,
        val_path: str | None = None,
        val_fraction: float = 0.05,
        max_length: int = 512,
        batch_size: int = 8,
        val_batch_size: int | None = None,
        template: str = "alpaca",
        bucket_by_length: bool = True,
        num_workers: int = 0,
        seed: int = 0,
        packing: bool = False,
        test_path: str | None = None,
        test_fraction: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive(batch_size=batch_size)
        if val_batch_size is not None:
            check_positive(val_batch_size=val_batch_size)
        if not isinstance(max_length, int) or max_length < 2:
            raise UserError(f"max_length must be at least 2 tokens, got {max_length!r}; raise --data.max_length")
        check_fraction("val_fraction", val_fraction)
        if test_fraction != 0:
            check_fraction("test_fraction", test_fraction)
            if test_path:
                raise UserError(
                    f"--data.test_path and --data.test_fraction {test_fraction} both give a test split: pass one"
                )
        check_template(template)  # fail now, not after loading the data, on an unknown template
        self.save_hyperparameters()  # with a subclass's own arguments too (Lightning collects every __init__'s)
        self.train_path, self.val_path, self.test_path = train_path, val_path, test_path
        self.max_length = max_length
        self.block_size = max_length  # what the LightningModule checks against the model's positions
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.template = template
        self.num_workers = num_workers
        self.train_set: RecordDataset | None = None
        self.val_set: RecordDataset | None = None
        self.test_set: RecordDataset | None = None  # None: no test split was asked for
        # One more than the largest token id the records can hold (the GPT-2 BPE's): checked against the model.
        self.token_id_bound: int | None = None

    # --- what a subclass says about its records -------------------------------------------------------------

    def read(self, path: str | os.PathLike) -> list[dict]:
        """The validated records of a file, as dicts."""
        raise NotImplementedError

    def build_dataset(self, records: list[dict], tokenizer, train: bool) -> RecordDataset:
        """The tokenized records; ``train`` False for the held-out set."""
        raise NotImplementedError

    # --- shared --------------------------------------------------------------------------------------------

    def split_records(self, records: list[dict]) -> Splits:
        """(training, validation, test) records: the validation and test records from their files when given, else
        held out of ``records`` by hash of ``held_out_fields`` (see ``split_by_hash``)."""
        hp, fields = self.hparams, self.held_out_fields
        val_fraction = 0.0 if self.val_path else hp.val_fraction
        test_fraction = 0.0 if self.test_path else hp.test_fraction
        train, val, test = split_by_hash(
            records, val_fraction, hp.seed, lambda r: [r[f] for f in fields], test_fraction
        )
        val = self.read(self.val_path) if self.val_path else val
        test = self.read(self.test_path) if self.test_path else test
        self._warn_of_overlap(train, val, test)
        return Splits(train, val, test)

    def _warn_of_overlap(self, train: list[dict], val: list[dict], test: list[dict]) -> None:
        # Separate files can repeat records; a held-out record also trained on makes its figure optimistic.
        key = self.held_out_fields

        def keys(split: list[dict]) -> set[str]:
            return {repr([r[f] for f in key]) for r in split}

        seen, val_keys, test_keys = keys(train), keys(val), keys(test)
        for name, split, split_keys in (("validation", val, val_keys), ("test", test, test_keys)):
            shared = len(split_keys & seen)
            if shared:
                log.warning(
                    f"{shared} of the {len(split)} {name} {self.record_kind} records also occur among the training "
                    f"records (same {', '.join(key)}): their {name} figures are optimistic; remove them from one file"
                )
        if test_keys & val_keys:
            log.warning(
                f"{len(test_keys & val_keys)} test {self.record_kind} records also occur among the validation "
                "records: the test split no longer reports apart from what the validation selected"
            )

    def load_splits(self) -> Splits:
        """(training, validation, test) records as dicts; ``test`` is empty when no test split was asked for."""
        if not self.train_path:
            raise UserError(
                f"{type(self).__name__} needs --data.train_path (a JSON or JSONL file of {self.record_kind} records)"
            )
        return self.split_records(self.read(self.train_path))

    def load_records(self) -> tuple[list[dict], list[dict]]:
        """(training, validation) records as dicts (``load_splits`` has the test records too)."""
        train, val, _ = self.load_splits()
        return train, val

    def prepare_data(self) -> None:
        # Every record validated and tokenized before the run starts, so an unusable set stops it before Lightning
        # creates its directory. Kept for setup, which builds them itself in processes that did not prepare.
        self.train_set, self.val_set, self.test_set = self._datasets()

    def has_test_split(self) -> bool:
        return bool(self.test_path) or self.hparams.test_fraction > 0

    def _datasets(self) -> tuple[RecordDataset, RecordDataset, RecordDataset | None]:
        from lit_gpt5.model.tokenizer import get_tokenizer

        train, val, test = self.load_splits()
        tokenizer = get_tokenizer()
        self.token_id_bound = tokenizer.n_vocab
        train_set, val_set = self.build_dataset(train, tokenizer, True), self.build_dataset(val, tokenizer, False)
        test_set = self.build_dataset(test, tokenizer, False) if self.has_test_split() else None
        named = [("training", train_set, len(train)), ("validation", val_set, len(val)), ("test", test_set, len(test))]
        for name, ds, n in named:
            if ds is not None and len(ds) == 0:
                raise UserError(
                    f"all {n} {name} records were dropped ({ds.stats.why_dropped()}; --data.max_length "
                    f"{self.max_length}): nothing is left to train on; fix the records, or raise --data.max_length"
                )
        return train_set, val_set, test_set

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set, self.val_set, self.test_set = self._datasets()
        if self.trainer is None or self.trainer.is_global_zero:
            log.info(self.train_set.stats.table("train"))
            log.info(self.val_set.stats.table("val"))
            if self.test_set is not None:
                log.info(self.test_set.stats.table("test"))

    def collate_fn(self):
        """How a list of records becomes a batch (the data set's own ``collate``)."""
        return self.train_set.collate

    def lengths(self, dataset: RecordDataset) -> list[int]:
        """Each record's length in tokens, to batch similar lengths together."""
        return dataset.lengths()

    def train_dataloader(self) -> DataLoader:
        rank, world_size, _ = trainer_position(self.trainer)
        start = global_batches_trained(self.trainer)
        hp = self.hparams
        # A row holds max_length positions of records; for pairs, room for both sides of one at its longest.
        width = self.max_length * (2 if self.batch_kind == "pairs" else 1) if hp.packing else None
        batches = SFTBatches(
            self.train_set, self.batch_size, hp.seed, hp.bucket_by_length, rank, world_size, pack_width=width,
            global_start=start,
        )  # fmt: skip
        return batch_loader(batches, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        rank, world_size, _ = trainer_position(self.trainer)
        return batch_loader(eval_batches(self.val_set, self.val_batch_size, rank, world_size), self.num_workers)

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            raise UserError(
                "test needs test records apart from the validation ones, which chose the checkpoint: fit and test "
                "with --data.test_fraction 0.1 (held out by hash; the validation records stay as they are) or "
                "--data.test_path FILE; validate reports on the validation records"
            )
        rank, world_size, _ = trainer_position(self.trainer)
        return batch_loader(eval_batches(self.test_set, self.val_batch_size, rank, world_size), self.num_workers)
