"""``GPTLitModule``: a GPT-2 trained with token-level cross-entropy, for pretraining and instruction tuning.

The module reads top to bottom as one run: it builds the model its settings describe, trains on batches ``(x, y)``,
evaluates, and hands what every trainer of the package shares to components (``lit_gpt5.training.settings``,
``optim``, ``step``, ``evaluation``; ``lit_gpt5.resume.state``): the preference-tuning modules compose the same ones.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torchmetrics import MeanMetric

from lit_gpt5.log import get_logger
from lit_gpt5.model.gpt import GPTConfig
from lit_gpt5.model.loss import mean_loss
from lit_gpt5.resume.state import RunState
from lit_gpt5.training.evaluation import log_validation
from lit_gpt5.training.preflight import check_run, describe_run
from lit_gpt5.training.settings import TrainingSettings, prepare_model
from lit_gpt5.training.step import OptimizerStep

log = get_logger(__name__)


class GPTLitModule(L.LightningModule):
    """GPT-2 trained with token-level cross-entropy.

    Works for both jobs of the project: batches are ``(x, y)`` with ``y`` = -100 where a token is not supervised
    (nowhere in pretraining, on the prompt in instruction tuning), or ``(x, y, positions, segments)`` of packed rows.
    The loss of an optimizer step is the mean over all supervised tokens of all its micro-batches on all ranks
    (``lit_gpt5.training.step.StepMean``), so gradient accumulation and data parallelism give the same gradient as
    one big batch.

    Its arguments are ``lit_gpt5.training.settings.TrainingSettings``' (``--model.model_name``,
    ``--model.learning_rate``, ``--model.lora_r``, ...): ``GPTLitModule(model_name="gpt-micro", learning_rate=2e-3)``.
    """

    unit_name = "supervised_tokens"  # what the loss of a step is the mean over (logged as train/<unit_name>)
    batch_kind = "tokens"  # the batches it trains on: (x, y); a data module that says otherwise is refused
    reported_metrics: tuple[str, ...] | None = ("val/loss",)  # what the console line of each validation shows

    def __init__(self, **settings) -> None:
        super().__init__()
        self.save_hyperparameters()
        TrainingSettings.check_names(settings)
        self.settings = TrainingSettings(**settings)
        self.hparams.update({k: v for k, v in self.settings.arguments().items() if k not in self.hparams})
        self.model = self.settings.build_model()
        self.optimization = self.settings.optimization()
        self.run_state = RunState()
        self.steps = OptimizerStep(self.unit_name, self.settings.on_nonfinite, self.run_state)
        self.eval_loss = torch.nn.ModuleDict({"val": MeanMetric(), "test": MeanMetric()})
        self.eval_loss_by_set = torch.nn.ModuleDict()  # one MeanMetric per held-out set, when there are several
        self.eval_only_sets: set[str] = set()  # held-out sets of documents never trained on: not in val/loss
        self.blocks_compiled = False
        self.last_batch_shape = (0, 0)  # (rows, positions) of the last batch: what flops_per_batch counts

    @property
    def config(self) -> GPTConfig:
        return self.model.config

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)

    @property
    def flops_per_batch(self) -> int:
        """Read by Lightning's ThroughputMonitor to log FLOP/s and MFU."""
        rows, positions = self.last_batch_shape
        return self.model.flops_per_token(positions, training=self.training) * rows * positions

    def loss_sum(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        input_pos: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum of token losses over the supervised targets of a batch, and their number (``GPT.loss_sum``); a packed
        batch also gives its positions and segments."""
        self.last_batch_shape = tuple(x.shape)
        return self.model.loss_sum(x, y, self.settings.loss_chunk_size, input_pos=input_pos, segments=segments)

    # --- before training ------------------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        # Checked here, before Lightning creates the run's log directory, so bad input leaves no empty run behind.
        check_run(self.trainer, self)

    def setup(self, stage: str) -> None:
        self.blocks_compiled = prepare_model(self.model, self.settings, self.trainer, self.blocks_compiled)
        names = getattr(getattr(self.trainer, "datamodule", None), "val_set_names", [])
        if len(names) > 1 and not self.eval_loss_by_set:
            for name in names:
                self.eval_loss_by_set[name] = MeanMetric()
        self.eval_only_sets = set(getattr(getattr(self.trainer, "datamodule", None), "eval_only_sets", []))

    def on_fit_start(self) -> None:
        self.run_state.begin()
        if self.trainer.is_global_zero:
            log.info(describe_run(self.trainer, self))

    # --- training -------------------------------------------------------------------------------------------------

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, *packed = batch  # (x, y), or (x, y, positions, segments) of packed rows
        self.run_state.seed_dropout(self.trainer, batch_idx)
        loss_sum, supervised = self.loss_sum(x, y, *packed)
        return self.steps.add(loss_sum, supervised, x.numel())

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Once per optimizer step, after the last micro-batch's backward and before the Trainer clips.
        self.steps.finish(self, optimizer)

    def configure_optimizers(self):
        return self.optimization.configure(self)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        norm = self.steps.grad_norm_of(self.global_step)
        self.optimization.clip(self, optimizer, gradient_clip_val, gradient_clip_algorithm, norm)

    # --- evaluation -----------------------------------------------------------------------------------------------

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0):
        self._eval_step(batch, "val", dataloader_idx)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0):
        self._eval_step(batch, "test", dataloader_idx)

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, dataloader_idx: int) -> None:
        loss_sum, count = self.loss_sum(*batch)
        mean = mean_loss(loss_sum, count)
        name = list(self.eval_loss_by_set)[dataloader_idx] if self.eval_loss_by_set else None
        if name not in self.eval_only_sets:  # a set never trained on is reported alone, not in {stage}/loss
            self.eval_loss[stage].update(mean, weight=count)
        if name is not None:
            self.eval_loss_by_set[name].update(mean, weight=count)

    def eval_metrics(self, stage: str) -> dict[str, float]:
        """This evaluation's figures (``val`` or ``test``): token-weighted means, already reduced across ranks; the
        metrics are reset for the next evaluation."""
        metrics = {}
        for name, metric in [(f"{stage}/loss", self.eval_loss[stage])] + [
            (f"{stage}/loss/{set_name}", m) for set_name, m in self.eval_loss_by_set.items()
        ]:
            metrics[name] = metric.compute().item()
            metric.reset()
        metrics[f"{stage}/ppl"] = math.exp(min(metrics[f"{stage}/loss"], 50.0))
        return metrics

    def on_validation_epoch_end(self) -> None:
        log_validation(self, self.eval_metrics("val"), self.reported_metrics)

    def on_test_epoch_end(self) -> None:
        for name, value in self.eval_metrics("test").items():
            self.log(name, value)

    # --- checkpoints (what they hold and how a run continues: lit_gpt5.resume.state) -------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.run_state.save(checkpoint, self.trainer, self.model)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        schedule = self.optimization.schedule
        self.run_state.restore(checkpoint, self.model, dict(self.hparams), schedule, attached_trainer(self))


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The Trainer ``module`` runs in, or None when it is used on its own (``load_from_checkpoint``)."""
    try:
        return module.trainer
    except RuntimeError:
        return None
