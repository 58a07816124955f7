"""``TokenWindowDataModule``: windowed training batches and exhaustive validation windows over token tensors, or the
documents of a token store: the data module other projects import (and ``GutenbergDataModule``'s base)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from lit_gpt5.data.segments import Segments
from lit_gpt5.data.starts import Sampling, WeightedRandomStarts, WindowStarts, make_starts
from lit_gpt5.data.streams import batch_loader, check_fraction, check_positive, trainer_position
from lit_gpt5.data.windows import (
    SPLITS,
    RandomWindowDataset,
    Split,
    as_segments,
    first_fraction,
    split_tokens,
    validation_windows,
)
from lit_gpt5.errors import UserError
from lit_gpt5.old_paths import deprecated
from lit_gpt5.resume.state import global_batches_trained

TokenSource = torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor]


class TokenWindowDataModule(L.LightningDataModule):
    """Windowed training batches and exhaustive validation windows over any 1-D token tensor (or several).

    This is the piece other projects import: give it your own tokens (or subclass it and override
    ``load_documents``).

    Args:
        tokens: 1-D integer tensor of token ids (any tokenizer); or a list / a ``{name: tensor}`` dict of several
            documents (books), each split on its own, whose windows never cross from one to another; with more
            than one, the validation loss is also reported per document (``val/loss/<name>``).
        block_size: T, the window length the model sees.
        batch_size: B, windows per training batch (per device).
        val_batch_size: windows per validation batch; defaults to ``batch_size``.
        val_fraction: share of the tokens held out for validation/test.
        split: ``tail`` (held-out text at the end) or ``interleaved`` (every k-th block held out).
        interleave_blocks: number of blocks for the interleaved split.
        sampling: ``random`` (independent random windows, the default), ``shuffled`` (every non-overlapping window
            once per epoch, in a new random order each epoch) or ``sequential`` (the same windows in text order).
        random_offset: with ``shuffled``/``sequential``, move the window boundaries by a random offset every epoch.
        num_workers: DataLoader worker processes. Drawing a batch is one gather, so 0 is usually fastest.
        seed: seed of the window stream (independent of the model's seed).
        store: a token store folder (``lit-gpt5 data build``) to train on instead of ``tokens``: its documents are
            read from disk a window at a time (memory stays flat however large the store), each split on its own,
            with the validation loss also per source (``val/loss/<source>``).
        source_weights: with ``store`` and ``random`` sampling, draw each window's source with these relative
            weights (``{"829": 1, "1342": 3}``) instead of in proportion to the sources' sizes.
        allow_unfinished_store: train on a store whose build did not finish (what its shards hold so far); refused
            otherwise. Every store's shards are checked against their sha256 once (``lit-gpt5 data verify``).
        train_fraction: train on the first this much of each document's training part (0 < f <= 1); the held-out
            part is unchanged. Less unique text for the same token budget: more passes over it (a data-constrained
            run).
        eval_only: names of documents (keys of ``tokens``) that are evaluated but never trained on: their held-out
            part is validated as ``val/loss/<name>``, and it is not part of ``val/loss`` (which selects checkpoints).
    """

    batch_kind = "tokens"  # batches (x, y): what GPTLitModule trains on

    def __init__(
        self,
        tokens: TokenSource | None = None,
        block_size: int = 256,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        val_fraction: float = 0.1,
        split: Split = "tail",
        interleave_blocks: int = 100,
        sampling: Sampling = "random",
        random_offset: bool = False,
        num_workers: int = 0,
        seed: int = 0,
        store: str | None = None,
        source_weights: dict[str, float] | None = None,
        allow_unfinished_store: bool = False,
        train_fraction: float = 1.0,
        eval_only: list[str] | None = None,
    ) -> None:
        super().__init__()
        if train_fraction != 1.0:
            check_fraction("train_fraction", train_fraction)
        if store is not None and (train_fraction != 1.0 or eval_only):
            raise UserError(
                "--data.train_fraction and --data.eval_only work on books and token tensors, not on a --data.store; "
                "build a store of the part to train on instead"
            )
        check_positive(block_size=block_size, batch_size=batch_size)
        if source_weights and (store is None or sampling != "random"):
            raise UserError("--data.source_weights needs --data.store and --data.sampling random")
        if val_batch_size is not None:
            check_positive(val_batch_size=val_batch_size)
        if not isinstance(num_workers, int) or num_workers < 0:
            raise UserError(f"num_workers must be >= 0, got {num_workers}")
        check_fraction("val_fraction", val_fraction)
        if split not in SPLITS:
            raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        make_starts(sampling, [block_size + 1], block_size, batch_size)  # an unknown name fails here, not later
        if random_offset and sampling == "random":
            raise UserError(
                "--data.random_offset true does nothing with --data.sampling random (its windows start anywhere "
                "already); drop it, or use --data.sampling shuffled or sequential"
            )
        self.save_hyperparameters(ignore=["tokens"])
        self.tokens = tokens
        self.train_fraction = train_fraction
        self.eval_only = list(eval_only or [])
        self.block_size = block_size
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.train_segments: list[torch.Tensor] = []
        self.val_segments: list[torch.Tensor] = []
        self.val_sets: dict[str, list[torch.Tensor] | Segments] = {}  # held-out segments per document (or source)
        self.segment_sources: list[str] | None = None  # with a store: each training segment's source
        self.store_identity: str | None = None  # with a store: what it holds, as one hash (saved with checkpoints)
        # One more than the largest token id the data can hold: checked against the model's vocabulary before a run.
        self.token_id_bound: int | None = None

    def load_documents(self) -> dict[str, torch.Tensor]:
        """The token tensors to train on, by name."""
        if self.tokens is None:
            raise UserError("TokenWindowDataModule needs a token tensor: TokenWindowDataModule(tokens=...)")
        if isinstance(self.tokens, torch.Tensor):
            return {"text": self.tokens}
        if isinstance(self.tokens, Mapping):
            return dict(self.tokens)
        return {str(i): t for i, t in enumerate(self.tokens)}

    def prepare_data(self) -> None:
        # Load and check everything here: Lightning creates the run's log directory right after prepare_data, and
        # bad input should stop the run before it leaves an empty one behind.
        if self.hparams.store:
            self._split_store()
        else:
            self._split(self.load_documents())

    def setup(self, stage: str | None = None) -> None:
        if self.hparams.store and self.segment_sources is None:
            self._split_store(keep=True)
        elif not self.hparams.store and not self.train_segments:
            self._split(self.load_documents(), keep=True)

    def _split_store(self, keep: bool = False) -> None:
        from lit_gpt5.data.store import TokenStore, store_split

        hp = self.hparams
        store = TokenStore(hp.store, allow_unfinished=hp.allow_unfinished_store, verify=True)
        self.store_identity, self.token_id_bound = store.identity, store.vocab_size
        train, val_sets, sources = store_split(store, self.block_size, hp.val_fraction, hp.split, hp.interleave_blocks)
        self.segment_sources = sources
        self.train_dataset(segments=train)  # fails now on a store without a single window (or bad weights)
        if keep:
            self.train_segments, self.val_sets = train, val_sets
        else:
            self.segment_sources = None

    @property
    def eval_only_sets(self) -> list[str]:
        """Held-out sets that are reported on their own but are not part of ``val/loss``: documents never trained on."""
        return list(self.eval_only)

    def _split(self, documents: dict[str, torch.Tensor], keep: bool = False) -> None:
        hp = self.hparams
        unknown = sorted(set(self.eval_only_sets) - set(documents))
        if unknown or (documents and set(self.eval_only_sets) >= set(documents)):
            raise UserError(
                f"--data.eval_only names {', '.join(unknown)}, not among the documents ({', '.join(documents)})"
                if unknown
                else "--data.eval_only names every document: leave at least one to train on"
            )
        train: list[torch.Tensor] = []
        val_sets: dict[str, list[torch.Tensor]] = {}
        # (NumPy's max: torch has none for uint16, the token cache's dtype)
        self.token_id_bound = max((int(t.cpu().numpy().max()) + 1 for t in documents.values() if len(t)), default=None)
        for name, tokens in documents.items():
            where = f" ({name})" if len(documents) > 1 else ""
            if len(tokens) < 2 * (self.block_size + 1):
                raise UserError(
                    f"the text{where} has {len(tokens)} tokens after cleaning, too few to train on windows of "
                    f"block_size + 1 = {self.block_size + 1} tokens and hold some out; use a longer text or a smaller "
                    "--data.block_size"
                )
            doc_train, held_out = split_tokens(as_segments(tokens)[0], hp.val_fraction, hp.split, hp.interleave_blocks)
            if max(len(s) for s in doc_train) < self.block_size + 1:
                raise UserError(
                    f"no training block of the {hp.split} split{where} holds a window of block_size + 1 = "
                    f"{self.block_size + 1} tokens; use fewer --data.interleave_blocks or a smaller --data.block_size"
                )
            if sum(len(s) for s in held_out) < 2:
                raise UserError(
                    f"--data.val_fraction {hp.val_fraction} holds out {sum(len(s) for s in held_out)} token(s) of "
                    f"{len(tokens)}{where}: nothing to validate on; raise --data.val_fraction"
                )
            if name not in self.eval_only_sets:
                doc_train = first_fraction(doc_train, self.train_fraction)
                if max((len(s) for s in doc_train), default=0) < self.block_size + 1:
                    raise UserError(
                        f"--data.train_fraction {self.train_fraction} leaves {sum(len(s) for s in doc_train)} training "
                        f"tokens{where}, no window of block_size + 1 = {self.block_size + 1}; raise it"
                    )
                train += doc_train
            val_sets[name] = held_out
        self.train_dataset(segments=train)  # fails now on a text without a single window
        if keep:
            self.train_segments, self.val_sets = train, val_sets
            self.val_segments = [seg for segs in val_sets.values() for seg in segs]

    def state_dict(self) -> dict:
        """What a checkpoint records of the data (Lightning saves it): a store's identity."""
        return {"store_identity": self.store_identity} if self.store_identity else {}

    def load_state_dict(self, state: dict) -> None:
        theirs = state.get("store_identity")
        if theirs and self.store_identity and theirs != self.store_identity:
            raise UserError(other_store_message(self.hparams.store))

    @classmethod
    def check_resume(cls, arguments: dict, state: dict) -> None:
        """Asked by a resumed run (``lit_gpt5.resume.arguments``) before anything starts: refuse a store that no
        longer holds what the checkpoint's run trained on. ``arguments``: this run's; ``state``: the checkpoint's
        ``state_dict``."""
        from lit_gpt5.data.store_manifest import identity, read_manifest

        theirs, store = state.get("store_identity"), arguments.get("store")
        if not theirs or not store:
            return
        manifest = read_manifest(Path(store).expanduser())
        if manifest is None or identity(manifest) != theirs:
            raise UserError(other_store_message(store))

    @property
    def val_set_names(self) -> list[str]:
        """Names of the held-out documents; one validation DataLoader each when there are several."""
        return list(self.val_sets)

    def train_dataset(
        self, start_batch: int = 0, segments: list[torch.Tensor] | None = None, global_start: int | None = None
    ) -> RandomWindowDataset:
        rank, world_size, _ = trainer_position(self.trainer)
        hp = self.hparams
        segments = self.train_segments if segments is None else segments
        starts = None
        if hp.source_weights:
            lengths = segments.lengths.tolist()
            starts = WeightedRandomStarts(
                lengths, self.block_size, self.batch_size, hp.seed, self.segment_sources, hp.source_weights
            )
        return RandomWindowDataset(
            segments,
            self.block_size,
            self.batch_size,
            hp.seed,
            rank,
            world_size,
            start_batch,
            hp.sampling,
            hp.random_offset,
            global_start,
            starts,
        )

    @property
    def window_starts(self) -> WindowStarts:
        """How training windows are chosen: what the coverage monitor replays to know which tokens were seen."""
        return self.train_dataset().window_starts

    @property
    def window_sampler(self) -> WindowStarts:
        """0.1's name of ``window_starts`` ("sampler" now means only the ``TextSampler`` callback); for one release."""
        deprecated(f"{type(self).__name__}.window_sampler", f"{type(self).__name__}.window_starts")
        return self.window_starts

    def train_dataloader(self) -> DataLoader:
        return batch_loader(self.train_dataset(global_start=global_batches_trained(self.trainer)), self.num_workers)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        rank, world_size, _ = trainer_position(self.trainer)
        loaders = [
            batch_loader(
                validation_windows(segs, self.block_size, self.val_batch_size, rank, world_size), self.num_workers
            )
            for segs in self.val_sets.values()
        ]
        return loaders[0] if len(loaders) == 1 else loaders

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        return self.val_dataloader()


def other_store_message(store: str) -> str:
    return (
        f"--data.store {store} does not hold what the checkpoint's run trained on (documents were added, removed or "
        "changed since): resume on the store as it was, or start a new run from the checkpoint's weights with "
        "--model.init_from"
    )
