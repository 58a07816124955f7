"""What the rest of the package reads from a data module and a record dataset: the contract, written down.

A data module of your own (any ``LightningDataModule``) works with the package's LightningModules as is. Satisfying
``TrainingData`` adds the checks and figures that need the batch shape: the model's positions checked against
``block_size`` before a run starts, and the estimated memory in the start-up line. ``WindowData`` adds what the
coverage monitor and per-document validation losses read. All four data modules of the package satisfy the protocols
they name (``tests/data/test_protocols.py``); nothing is checked by inheritance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from lit_gpt5.data.starts import WindowStarts


@runtime_checkable
class TrainingData(Protocol):
    """The batch shape of a data module, per device."""

    block_size: int  # the longest sequence a batch holds (T); checked against the model's positions
    batch_size: int  # sequences (or pairs, for preference data) per micro-batch
    # "tokens" for batches (x, y), "pairs" for (x, y, index) of preference pairs: checked against the
    # LightningModule's own batch_kind before a run starts (a DPO module on token batches is refused).
    batch_kind: str
    # Optional, not part of the protocol's check: ``token_id_bound``, one more than the largest token id the data can
    # hold once ``prepare_data`` ran; a model with a smaller vocabulary is refused before the run starts.


@runtime_checkable
class HeldOutSets(Protocol):
    """A data module whose held-out data comes in several named sets, one validation DataLoader each, in this order
    (``val/loss/<name>`` per set)."""

    @property
    def val_set_names(self) -> list[str]: ...


@runtime_checkable
class WindowData(TrainingData, HeldOutSets, Protocol):
    """Windows of token tensors (``TokenWindowDataModule`` and its subclasses)."""

    @property
    def window_starts(self) -> WindowStarts:
        """Where training windows start: replayed by ``CoverageMonitor`` to know which tokens were seen."""
        ...


@runtime_checkable
class RecordDataset(Protocol):
    """A map-style data set of tokenized records (instruction examples, preference pairs) that batches itself."""

    eot: int  # the end-of-text id, used as padding

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]: ...

    def lengths(self) -> list[int]:
        """Tokens of each item (the longer side of a pair): what length bucketing sorts by."""
        ...

    def collate(self, items: Sequence[dict[str, torch.Tensor]]) -> Any:
        """A batch of items, padded by position."""
        ...
