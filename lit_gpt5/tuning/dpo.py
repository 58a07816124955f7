"""Direct Preference Optimization: after instruction tuning, learn from pairs (chosen, rejected) of responses.

RLHF maximises E[r(x, y)] - beta * KL(pi_theta || pi_ref): a reward model, then PPO, with the KL term keeping the
policy near the instruction-tuned model pi_ref. DPO (Rafailov et al. 2023) solves that same objective in closed form
from preference pairs: with the reward implicit in the policy, r = beta * log(pi_theta / pi_ref), the loss is

    -log sigmoid(beta * [(log pi_theta(y_w|x) - log pi_ref(y_w|x)) - (log pi_theta(y_l|x) - log pi_ref(y_l|x))])

over pairs of a chosen y_w and a rejected y_l: no reward model, no sampling. The SFT model is both the starting
policy and the frozen reference.

    python -m lit_gpt5.cli fit --config configs/dpo-gulliver.yaml --model.init_from <sft checkpoint>
"""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F

from lit_gpt5.data.preferences import PreferenceDataModule, collate_pairs
from lit_gpt5.errors import UserError
from lit_gpt5.log import get_logger
from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.model.loss import IGNORE_INDEX
from lit_gpt5.resume.state import RunState
from lit_gpt5.training.evaluation import log_validation
from lit_gpt5.training.module import attached_trainer
from lit_gpt5.training.preflight import check_run, describe_run
from lit_gpt5.training.settings import TrainingSettings, prepare_model
from lit_gpt5.training.step import OptimizerStep
from lit_gpt5.tuning.metrics import StageMeans
from lit_gpt5.tuning.reference import BaseView, Reference

log = get_logger(__name__)

LOSS_TYPES = ("sigmoid", "ipo")
METRICS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")
METRICS += ("logps/chosen", "logps/rejected", "logps/accuracies", "kl")


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair ``(losses, chosen_rewards, rejected_rewards)`` from sequence log-probabilities (sums over response
    tokens). Rewards are ``beta * (log pi_theta - log pi_ref)``, detached.

    ``sigmoid``: DPO's ``-log sigmoid(beta * (policy margin - reference margin))``; with ``label_smoothing`` eps > 0,
    conservative DPO (cDPO, Mitchell 2023): each label is taken as wrong with probability eps, so the loss is
    ``-(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)`` and no longer rewards an unbounded margin. ``ipo``
    (Azar et al. 2023): ``((log pi_theta(y_w) - log pi_theta(y_l)) - (log pi_ref(y_w) - log pi_ref(y_l))
    - 1 / (2 beta))^2``, which does not push the margin to infinity on pairs it already ranks right.
    """
    if loss_type not in LOSS_TYPES:
        raise UserError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {loss_type!r}")
    if not beta > 0:
        raise UserError(f"beta must be > 0, got {beta}")
    if not 0 <= label_smoothing < 0.5:
        raise UserError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if label_smoothing and loss_type != "sigmoid":
        raise UserError("label_smoothing (cDPO) is a variant of the sigmoid loss; use it with loss_type sigmoid")
    logits = (policy_chosen_logps - policy_rejected_logps) - (ref_chosen_logps - ref_rejected_logps)
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * logits) - label_smoothing * F.logsigmoid(-beta * logits)
    else:
        losses = (logits - 1 / (2 * beta)) ** 2
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards


def sequence_logps(
    model: GPT,
    x: torch.Tensor,
    y: torch.Tensor,
    chunk_size: int = 0,
    input_pos: torch.Tensor | None = None,
    segments: torch.Tensor | None = None,
) -> torch.Tensor:
    """log pi(response | prompt) of each row: the sum of the log-probabilities of its supervised tokens. Packed rows
    (``segments``, as ``PreferenceDataset.collate_packed`` numbers them: 2k pair k's chosen side, 2k + 1 its
    rejected one): one figure per sequence, ordered as unpacked rows are, the chosen sides first."""
    losses = model.token_losses(x, y, chunk_size, input_pos=input_pos, segments=segments)
    if segments is None:
        return -losses.sum(-1)
    keep = segments >= 0
    sums = losses.new_zeros(int(segments.max()) + 1).index_add(0, segments[keep], losses[keep])
    return -sums.view(-1, 2).t().reshape(-1)


@torch.no_grad()
def token_kl(policy: GPT, reference: GPT, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum, count) over the supervised positions of KL(pi_theta(.|context) || pi_ref(.|context)), exact over the
    vocabulary, one row at a time (two rows of logits in memory, not two batches)."""
    total, count = torch.zeros((), device=x.device), torch.zeros((), device=x.device)
    for row in range(x.size(0)):
        keep = y[row] != IGNORE_INDEX
        if not keep.any():
            continue
        logp = torch.log_softmax(policy(x[row : row + 1])[0][keep].float(), -1)
        logq = torch.log_softmax(reference(x[row : row + 1])[0][keep].float(), -1)
        total += (logp.exp() * (logp - logq)).sum()
        count += keep.sum()
    return total, count


class DPOLitModule(L.LightningModule):
    """DPO on a GPT-2 that was instruction-tuned: ``init_from`` is the SFT model, the starting policy and (unless
    ``reference`` names another) the frozen reference pi_ref. Batches are ``(x, y, index)`` of
    ``lit_gpt5.data.preferences.collate_pairs``: B chosen rows, then B rejected ones, in one forward.

    The loss of an optimizer step is the mean over its pairs across micro-batches and ranks (as the SFT loss is the
    mean over its tokens). Logged: ``train/rewards/{chosen,rejected,margins,accuracies}`` (rewards
    beta * log(pi_theta / pi_ref), accuracy = share of pairs whose chosen reward is higher, a tie counting half), the
    same as ``val/...`` on held-out pairs with ``val/loss``, ``val/logps/{chosen,rejected,accuracies}`` (the policy's
    own preference: log pi_theta(y_w) > log pi_theta(y_l)), and ``val/kl``: KL(pi_theta || pi_ref) per held-out
    response token, exact over the vocabulary (not with ``precompute_reference``, which keeps no reference model to
    compare with).

    Args:
        init_from: the SFT model's weights (an HF directory or a ``.ckpt``): the starting policy.
        beta: the KL penalty's strength: higher keeps the policy closer to the reference.
        loss_type: ``sigmoid`` (DPO) or ``ipo``.
        label_smoothing: cDPO's assumed share of wrong labels, in [0, 0.5); 0 is plain DPO (sigmoid loss only).
        reference: the reference model's weights, if not ``init_from`` (an HF directory or a ``.ckpt``). With LoRA
            (``lora_r`` > 0) and no ``reference``, the reference is the policy with its adapters switched off: the
            ``init_from`` model itself, with no second copy in memory (``lit_gpt5.tuning.reference``).
        precompute_reference: compute the reference's log-probabilities of every pair once at the start and drop
            the reference model, so no second model sits in memory while training; they are saved in checkpoints.
        dropout: 0 by default: with dropout the policy's log-probabilities would differ from the reference's even
            where the weights are equal.
        settings: the other arguments are ``lit_gpt5.training.settings.TrainingSettings``' (``learning_rate`` for
            DPO is typically 10-100x lower than SFT's).
    """

    unit_name = "pairs"
    batch_kind = "pairs"
    reported_metrics = None  # the console line of each validation shows every metric

    def __init__(
        self,
        init_from: str | None = None,
        beta: float = 0.1,
        loss_type: Literal["sigmoid", "ipo"] = "sigmoid",
        label_smoothing: float = 0.0,
        reference: str | None = None,
        precompute_reference: bool = False,
        dropout: float | None = 0.0,
        **settings,
    ) -> None:
        if not init_from and not reference:
            raise UserError(
                "DPO starts from an instruction-tuned model: pass --model.init_from <SFT .ckpt or Hugging Face dir>"
            )
        zero = torch.zeros(1)
        dpo_loss(zero, zero, zero, zero, beta, loss_type, label_smoothing)  # checks the three
        super().__init__()
        self.save_hyperparameters()
        TrainingSettings.check_names(settings)
        self.settings = TrainingSettings(init_from=init_from, dropout=dropout, **settings)
        self.hparams.update({k: v for k, v in self.settings.arguments().items() if k not in self.hparams})
        self.beta, self.loss_type, self.label_smoothing = beta, loss_type, label_smoothing
        self.precompute_reference = precompute_reference
        self.model = self.settings.build_model()
        lora_reference = bool(self.settings.lora_r) and reference is None
        self.reference = Reference(
            self.model,
            reference or init_from,
            lora=lora_reference,
            keep_model=lora_reference or not precompute_reference,
        )
        self.optimization = self.settings.optimization()
        self.run_state = RunState()
        self.run_state.add(self.reference)  # precomputed log-probabilities ride in the checkpoint
        self.steps = OptimizerStep(self.unit_name, self.settings.on_nonfinite, self.run_state)
        self.metrics = StageMeans(METRICS)
        self.blocks_compiled = False
        self.last_batch_shape = (0, 0)

    @property
    def config(self) -> GPTConfig:
        return self.model.config

    @property
    def reference_model(self) -> GPT | BaseView | None:
        """The frozen reference pi_ref (with LoRA, a view of the policy without its adapters); None when only its
        precomputed log-probabilities are kept."""
        return self.reference.model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)

    @property
    def flops_per_batch(self) -> int:
        rows, positions = self.last_batch_shape
        return self.model.flops_per_token(positions, training=self.training) * rows * positions

    # --- before training ------------------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        check_run(self.trainer, self)

    def setup(self, stage: str) -> None:
        self.blocks_compiled = prepare_model(self.model, self.settings, self.trainer, self.blocks_compiled)

    def on_fit_start(self) -> None:
        self.run_state.begin()
        if self.trainer.is_global_zero:
            log.info(describe_run(self.trainer, self))
        if self.precompute_reference and not self.reference.precomputed:
            self.reference.use_precomputed(self.precompute_reference_logps(self.trainer.datamodule))

    @torch.no_grad()
    def precompute_reference_logps(self, datamodule: PreferenceDataModule) -> dict[str, torch.Tensor]:
        """log pi_ref(chosen) and log pi_ref(rejected) of every pair of both splits, by a reference model loaded
        just for this: split -> (pairs, 2)."""
        reference = self.reference.load_model().to(self.device)
        tables = {}
        for split, dataset in (("train", datamodule.train_set), ("val", datamodule.val_set)):
            table = torch.zeros(len(dataset), 2)
            for start in range(0, len(dataset), datamodule.val_batch_size):
                items = [dataset[i] for i in range(start, min(start + datamodule.val_batch_size, len(dataset)))]
                x, y, index = (t.to(self.device) for t in collate_pairs(items, dataset.eot))
                # In the Trainer's precision (bf16 autocast...), like the policy's log-probs: so rewards start at 0.
                with self.trainer.precision_plugin.forward_context():
                    logps = sequence_logps(reference, x, y, self.settings.loss_chunk_size).float().cpu()
                table[index.cpu(), 0], table[index.cpu(), 1] = logps[: len(items)], logps[len(items) :]
            tables[split] = table
        return tables

    # --- the loss of a batch of pairs -----------------------------------------------------------------------------

    def reference_sequence_logps(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, split: str, *packed):
        """log pi_ref of each row: from the precomputed tables, or by the reference model."""
        if self.reference.precomputed:
            return self.reference.pair_logps(split, index)
        with torch.no_grad():
            return sequence_logps(self.reference.model_on(x.device), x, y, self.settings.loss_chunk_size, *packed)

    def pair_losses(self, batch, split: str) -> tuple[torch.Tensor, ...]:
        """(losses, chosen rewards, rejected rewards, the policy's sequence log-probabilities) of a batch of pairs."""
        x, y, *packed, index = batch  # (x, y, index), or (x, y, positions, segments, index) of packed rows
        self.last_batch_shape = tuple(x.shape)
        n = len(index)
        policy = sequence_logps(self.model, x, y, self.settings.loss_chunk_size, *packed)
        ref = self.reference_sequence_logps(x, y, index, split, *packed).to(policy.dtype)
        losses, chosen, rejected = dpo_loss(
            policy[:n], policy[n:], ref[:n], ref[n:], self.beta, self.loss_type, self.label_smoothing
        )
        return losses, chosen, rejected, policy.detach()

    def _update(self, stage: str, losses, chosen, rejected, policy) -> None:
        n = len(losses)
        values = {
            "loss": losses.detach(),
            "rewards/chosen": chosen,
            "rewards/rejected": rejected,
            "rewards/margins": chosen - rejected,
            # A tie counts half (TRL counts it as wrong): at the start every reward is 0, and chance is 0.5, not 0.
            "rewards/accuracies": (chosen > rejected).float() + 0.5 * (chosen == rejected).float(),
            "logps/chosen": policy[:n],
            "logps/rejected": policy[n:],
            "logps/accuracies": (policy[:n] > policy[n:]).float(),
        }
        self.metrics.add(stage, values)

    # --- training -------------------------------------------------------------------------------------------------

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        self.run_state.seed_dropout(self.trainer, batch_idx)
        losses, chosen, rejected, policy = self.pair_losses(batch, "train")
        self._update("train", losses, chosen, rejected, policy)
        return self.steps.add(losses.sum(), torch.tensor(len(losses)), batch[0].numel())

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.steps.finish(self, optimizer)
        for name, value in self.metrics.compute("train").items():
            if name != "train/loss":  # logged by the step itself, as the mean over the step's pairs
                self.log(name, value)

    def configure_optimizers(self):
        return self.optimization.configure(self)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        norm = self.steps.grad_norm_of(self.global_step)
        self.optimization.clip(self, optimizer, gradient_clip_val, gradient_clip_algorithm, norm)

    # --- evaluation -----------------------------------------------------------------------------------------------

    def _eval(self, batch, stage: str) -> None:
        losses, chosen, rejected, policy = self.pair_losses(batch, "val")
        self._update(stage, losses, chosen, rejected, policy)
        if self.reference.model is not None:
            total, count = token_kl(self.model, self.reference.model_on(batch[0].device), batch[0], batch[1])
            self.metrics[f"{stage}_kl"].update(total / count.clamp(min=1), weight=count)

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval(batch, "val")

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval(batch, "test")

    def eval_metrics(self, stage: str) -> dict[str, float]:
        return self.metrics.compute(stage)

    def on_validation_epoch_end(self) -> None:
        log_validation(self, self.eval_metrics("val"), self.reported_metrics)

    def on_test_epoch_end(self) -> None:
        for name, value in self.eval_metrics("test").items():
            self.log(name, value)

    # --- checkpoints (lit_gpt5.resume.state) -----------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.run_state.save(checkpoint, self.trainer, self.model)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        schedule = self.optimization.schedule
        self.run_state.restore(checkpoint, self.model, dict(self.hparams), schedule, attached_trainer(self))
