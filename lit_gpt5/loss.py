"""Token-level cross-entropy as (sum, count), so callers can average over exactly the tokens they mean.

Pretraining supervises every target; instruction tuning only the response. Returning the sum and the number of
supervised tokens lets the LightningModule divide by the supervised tokens of a whole optimizer step (across
micro-batches and ranks) rather than averaging per-batch means, which would weight tokens unequally.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def cross_entropy_sum(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of token losses over targets != ignore_index, and how many there are. All-ignored gives (0, 0), not NaN."""
    # float32 log-softmax: bf16 logits lose ~3 significant digits, enough to bias a loss averaged over 50,257 classes.
    loss_sum = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=ignore_index, reduction="sum"
    )
    return loss_sum, (targets != ignore_index).sum()


def mean_loss(loss_sum: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """loss_sum / count, with 0 (never NaN) when nothing was supervised."""
    return loss_sum / count.clamp(min=1)
