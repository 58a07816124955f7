"""Running means of named metrics per stage (train, val, test), logged under TRL-style names like ``val/kl``.

DPO and RLOO log several per-sample figures each step and at each validation's end; this is their one bookkeeping:
``add`` adds a batch's values, ``compute`` returns the means of what was updated and resets them for the next
step or validation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torchmetrics import MeanMetric

STAGES = ("train", "val", "test")


def _key(stage: str, name: str) -> str:
    return f"{stage}/{name}".replace("/", "_")  # module names cannot hold "/"


class StageMeans(torch.nn.ModuleDict):
    """One ``MeanMetric`` per (stage, name); a ``ModuleDict`` so that Lightning moves and syncs them with the model."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(names)
        super().__init__({_key(stage, name): MeanMetric() for stage in STAGES for name in self.names})

    def add(self, stage: str, values: Mapping[str, torch.Tensor]) -> None:
        for name, value in values.items():
            self[_key(stage, name)].update(value.float())

    def compute(self, stage: str) -> dict[str, float]:
        """``{"<stage>/<name>": mean}`` of the metrics updated since the last call; every metric of ``stage`` reset."""
        out = {}
        for name in self.names:
            metric = self[_key(stage, name)]
            if metric.update_called:
                out[f"{stage}/{name}"] = metric.compute().item()
            metric.reset()
        return out
