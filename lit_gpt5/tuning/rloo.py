"""On-policy RL with a KL penalty: RLOO (REINFORCE leave-one-out; Kool et al. 2019, Ahmadian et al. 2024).

The objective is the one RLHF writes down and DPO solves in closed form: maximise
``E[r(x, y)] - beta * KL(pi || pi_ref)`` over prompts x and continuations y ~ pi. Each training step, for P prompts:

1. sample k continuations of each from the current policy (KV cache; seeded by the run's seed, the rank and the
   micro-batch, so a resumed run draws the same samples);
2. score each with the known reward r (``lit_gpt5.tuning.rewards``, nats per token) and estimate its KL as the mean
   over its tokens of ``log pi(y_t) - log pi_ref(y_t)``: the return ``R_i = r_i - beta * kl_i``;
3. baseline each sample with the mean return of the *other* k - 1 samples of its prompt (leave-one-out, so the
   baseline does not depend on the sample and the estimate stays unbiased): ``A_i = R_i - mean_{j != i} R_j``;
4. minimise ``-A_i * log pi(y_i | x)`` (the sum over the continuation's tokens), the mean over the P x k samples.

Its gradient is the REINFORCE estimate of the objective's (the KL's own score term vanishes: E[grad log pi] = 0). One
gradient step per batch of samples, so no importance ratio or clipping is needed (that is what PPO adds for reusing
samples). Compared with PPO there is no value network: for short continuations and k >= 2 samples per prompt the
leave-one-out baseline does its job at no cost, which is the RLOO paper's finding.

    python -m lit_gpt5.cli fit --config configs/rloo-books.yaml --model.init_from <base .ckpt> \\
        --model.reward pairs/reward.json --data.train_path pairs/train_prompts.jsonl
"""

from __future__ import annotations

import lightning as L
import torch

from lit_gpt5.data.rollout_prompts import unpad
from lit_gpt5.errors import UserError
from lit_gpt5.log import get_logger
from lit_gpt5.model.gpt import GPTConfig
from lit_gpt5.resume.state import RunState
from lit_gpt5.training.evaluation import log_validation
from lit_gpt5.training.module import attached_trainer
from lit_gpt5.training.preflight import check_run, describe_run
from lit_gpt5.training.settings import TrainingSettings, prepare_model
from lit_gpt5.training.step import OptimizerStep
from lit_gpt5.tuning.metrics import StageMeans
from lit_gpt5.tuning.reference import Reference
from lit_gpt5.tuning.rewards import load_reward
from lit_gpt5.tuning.rollouts import rollout_seed, sample_continuations, token_logps

log = get_logger(__name__)

METRICS = ("objective/scores", "objective/kl", "objective/rlhf_reward", "objective/non_score_reward")
METRICS += ("completions/mean_length",)


def rloo_advantages(returns: torch.Tensor, samples_per_prompt: int) -> torch.Tensor:
    """``R_i - mean of the other samples' returns of the same prompt``; ``returns`` (P x k,), each prompt's k
    samples together."""
    k = samples_per_prompt
    if k < 2:
        raise UserError(f"RLOO needs at least 2 samples per prompt (the others are the baseline), got {k}")
    if returns.numel() % k:
        raise ValueError(f"{returns.numel()} returns are not a whole number of groups of {k}")
    groups = returns.view(-1, k)
    others = (groups.sum(1, keepdim=True) - groups) / (k - 1)
    return (groups - others).view(-1)


def rloo_loss(
    sequence_logps: torch.Tensor, returns: torch.Tensor, samples_per_prompt: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(losses, advantages)``: ``-A_i * log pi(y_i | x)``, the advantages detached (they are weights of
    the score function, not something to differentiate)."""
    advantages = rloo_advantages(returns.detach(), samples_per_prompt)
    return -advantages.to(sequence_logps.dtype) * sequence_logps, advantages


class RLOOLitModule(L.LightningModule):
    """RLOO on a known reward from a pretrained (or instruction-tuned) GPT-2: ``init_from`` is the starting policy and
    (unless ``reference`` names another) the frozen reference pi_ref. Batches are prompts
    (``lit_gpt5.data.rollout_prompts.PromptDataModule``); the loss of an optimizer step is the mean over its samples.

    Logged with TRL's names: ``train/objective/scores`` (the mean known reward of the step's samples),
    ``train/objective/kl`` (KL per token), ``train/objective/rlhf_reward`` (scores - kl_coef * kl, what is
    maximised), ``train/objective/non_score_reward``, ``train/completions/mean_length``; the same as ``val/...`` on
    held-out prompts, from ``val_samples_per_prompt`` samples each with fixed seeds. ``val/loss`` is
    ``-val/objective/rlhf_reward``, so the best checkpoint is the one with the highest penalised reward.

    Args:
        init_from: the starting policy's weights (an HF directory or a ``.ckpt``).
        reward: the known reward's spec (``reward.json``, written by ``lit-gpt5 reward pairs``).
        kl_coef: beta, the KL penalty's strength (per token): higher keeps the policy closer to the reference.
        samples_per_prompt: k >= 2 continuations of each prompt per step (the leave-one-out baseline needs 2).
        max_new_tokens: the continuations' length (fixed: the books hold no end-of-text token to stop at).
        val_samples_per_prompt: continuations of each held-out prompt per validation.
        reference: the reference's weights, if not ``init_from``. With LoRA and no ``reference``, the reference is
            the policy with its adapters switched off (no second model in memory; ``lit_gpt5.tuning.reference``).
        dropout: 0 by default: sampling and the log-probabilities must be the same policy's.
        settings: the other arguments are ``lit_gpt5.training.settings.TrainingSettings``'. Sampling is at
            temperature 1 (no top-k or top-p): the REINFORCE gradient and the KL estimate hold only for samples of
            pi itself.
    """

    unit_name = "samples"
    batch_kind = "prompts"
    reported_metrics = ("val/objective/scores", "val/objective/kl", "val/objective/rlhf_reward")

    def __init__(
        self,
        init_from: str | None = None,
        reward: str | None = None,
        kl_coef: float = 0.05,
        samples_per_prompt: int = 4,
        max_new_tokens: int = 32,
        val_samples_per_prompt: int = 2,
        reference: str | None = None,
        dropout: float | None = 0.0,
        **settings,
    ) -> None:
        if not init_from and not reference:  # resumed runs keep their reference and take the weights from --ckpt_path
            raise UserError("RLOO starts from a trained model: pass --model.init_from <.ckpt or Hugging Face dir>")
        if not reward:
            raise UserError("RLOO needs a reward: pass --model.reward <reward.json of lit-gpt5 reward pairs>")
        if not kl_coef >= 0:
            raise UserError(f"--model.kl_coef must be >= 0, got {kl_coef}")
        for name, value in (("max_new_tokens", max_new_tokens), ("val_samples_per_prompt", val_samples_per_prompt)):
            if not isinstance(value, int) or value < 1:
                raise UserError(f"--model.{name} must be a positive integer, got {value!r}")
        rloo_advantages(torch.zeros(samples_per_prompt), samples_per_prompt)  # checks k >= 2
        super().__init__()
        self.save_hyperparameters()
        TrainingSettings.check_names(settings)
        self.settings = TrainingSettings(init_from=init_from, dropout=dropout, **settings)
        self.hparams.update({k: v for k, v in self.settings.arguments().items() if k not in self.hparams})
        self.kl_coef, self.samples_per_prompt = kl_coef, samples_per_prompt
        self.max_new_tokens, self.val_samples_per_prompt = max_new_tokens, val_samples_per_prompt
        self.model = self.settings.build_model()
        self.known_reward = load_reward(reward)
        self.reference = Reference(
            self.model, reference or init_from, lora=bool(self.settings.lora_r) and not reference
        )
        self.optimization = self.settings.optimization()
        self.run_state = RunState()
        self.steps = OptimizerStep(self.unit_name, self.settings.on_nonfinite, self.run_state)
        self.metrics = StageMeans(METRICS)
        self.blocks_compiled = False
        self.last_batch_shape = (0, 0)

    @property
    def config(self) -> GPTConfig:
        return self.model.config

    @property
    def reference_model(self):
        return self.reference.model_on(self.device)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)

    @property
    def flops_per_batch(self) -> int:
        rows, positions = self.last_batch_shape
        return self.model.flops_per_token(positions, training=self.training) * rows * positions

    # --- before training ------------------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        check_run(self.trainer, self)
        data = getattr(self.trainer, "datamodule", None)
        sets = [getattr(data, name, None) for name in ("train_set", "val_set")]
        longest = max((max(s.lengths()) for s in sets if s is not None and len(s)), default=0)
        if longest + self.max_new_tokens > self.config.block_size:
            raise UserError(
                f"the longest prompt ({longest} tokens) and its {self.max_new_tokens} new ones need more than the "
                f"model's {self.config.block_size} positions; lower --data.max_length (a prompt keeps its end) or "
                "--model.max_new_tokens"
            )

    def setup(self, stage: str) -> None:
        self.blocks_compiled = prepare_model(self.model, self.settings, self.trainer, self.blocks_compiled)

    def on_fit_start(self) -> None:
        self.run_state.begin()
        if self.trainer.is_global_zero:
            log.info(describe_run(self.trainer, self))

    # --- rollouts -------------------------------------------------------------------------------------------------

    def rollout(self, batch, samples: int, seed: int, train: bool) -> tuple[torch.Tensor, ...]:
        """(per-token log pi of the samples, per-sample scores, per-sample KL per token) of ``samples``
        continuations of each prompt of ``batch``; log pi keeps its gradient when ``train``."""
        prompts, lengths, _ = batch
        rows = unpad(prompts, lengths)
        chunk = self.settings.loss_chunk_size
        completions = sample_continuations(self.model, rows, samples, self.max_new_tokens, seed)
        repeated = [r for r in rows for _ in range(samples)]
        with torch.set_grad_enabled(train and torch.is_grad_enabled()):
            policy = token_logps(self.model, repeated, completions, chunk)
        with torch.no_grad():
            reference = token_logps(self.reference.model_on(self.device), repeated, completions, chunk)
        scores = self.known_reward(torch.tensor([r[-1] for r in repeated]), completions).to(policy.device)
        kl = (policy.detach() - reference).float().mean(dim=1)
        self.last_batch_shape = (len(repeated), prompts.size(1) + self.max_new_tokens)
        return policy, scores, kl

    def _update(self, stage: str, scores: torch.Tensor, kl: torch.Tensor) -> None:
        beta = self.kl_coef
        values = {
            "objective/scores": scores,
            "objective/kl": kl,
            "objective/rlhf_reward": scores - beta * kl,
            "objective/non_score_reward": -beta * kl,
            "completions/mean_length": torch.full_like(scores, float(self.max_new_tokens)),
        }
        self.metrics.add(stage, values)

    # --- training -------------------------------------------------------------------------------------------------

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        # The samples of a micro-batch depend on where in the run it is, as dropout masks do (seed_dropout).
        index = self.run_state.micro_batch_index(self.trainer, batch_idx)
        seed = rollout_seed(self.run_state.rng_seed, self.global_rank, index)
        self.run_state.seed_dropout(self.trainer, batch_idx)
        k = self.samples_per_prompt
        policy, scores, kl = self.rollout(batch, k, seed, train=True)
        returns = scores - self.kl_coef * kl
        losses, _ = rloo_loss(policy.sum(dim=1), returns, k)
        self._update("train", scores, kl)
        return self.steps.add(losses.sum(), torch.tensor(len(losses)), policy.numel())

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.steps.finish(self, optimizer)
        for name, value in self.metrics.compute("train").items():
            self.log(name, value)

    def configure_optimizers(self):
        return self.optimization.configure(self)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        norm = self.steps.grad_norm_of(self.global_step)
        self.optimization.clip(self, optimizer, gradient_clip_val, gradient_clip_algorithm, norm)

    # --- evaluation -----------------------------------------------------------------------------------------------

    def _eval(self, batch, stage: str) -> None:
        # Fixed seeds per held-out prompt: every validation of every run draws with the same random numbers.
        seed = rollout_seed(0, int(batch[2][0]))
        _, scores, kl = self.rollout(batch, self.val_samples_per_prompt, seed, train=False)
        self._update(stage, scores, kl)

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval(batch, "val")

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval(batch, "test")

    def eval_metrics(self, stage: str) -> dict[str, float]:
        metrics = self.metrics.compute(stage)
        if f"{stage}/objective/rlhf_reward" in metrics:
            metrics[f"{stage}/loss"] = -metrics[f"{stage}/objective/rlhf_reward"]
        return metrics

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
