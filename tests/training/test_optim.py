"""AdamW: fused wherever Lightning can still clip its gradients, and ``--trainer.gradient_clip_val`` honoured then."""

import lightning as L
import pytest
import torch

from lit_gpt5.training.module import GPTLitModule
from tests.training.test_module import FixedBatches


class SteppedGradNorms(L.Callback):
    """The total gradient norm each optimizer step was taken with (after clipping), read by torch's step post-hook:
    gradients stay on the parameters until the next step zeroes them."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_train_start(self, trainer, pl_module) -> None:
        def record(optimizer, args, kwargs) -> None:
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            self.norms.append(float(torch.nn.utils.get_total_norm(grads)))

        trainer.optimizers[0].register_step_post_hook(record)


def fit(precision: str | None, clip: float | None, steps: int = 2, **kwargs) -> tuple[L.Trainer, list[float]]:
    torch.manual_seed(0)
    module = GPTLitModule(model_name="gpt-nano", n_layer=1, warmup_steps=0)
    batches = [(torch.randint(0, 50257, (2, 16)), torch.randint(0, 50257, (2, 16))) for _ in range(steps)]
    norms = SteppedGradNorms()
    trainer = L.Trainer(
        max_steps=steps, precision=precision, gradient_clip_val=clip, accelerator="cpu", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        callbacks=[norms], **kwargs,
    )  # fmt: skip
    trainer.fit(module, datamodule=FixedBatches(batches))
    return trainer, norms.norms


@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true"])
def test_a_fused_adamw_is_clipped(precision):
    # Lightning's mixed-precision plugin refuses to clip for a fused optimizer ("does not allow for gradient
    # clipping"): model5.yaml, bf16-mixed with clipping on a GPU, stopped at its first step.
    trainer, norms = fit(precision, clip=0.01)
    assert trainer.optimizers[0].defaults["fused"]
    # Exactly the clip value: clipping reuses the step's logged norm, so a stale or wrong one would show here.
    assert len(norms) == 2 and all(n == pytest.approx(0.01, rel=1e-4) for n in norms)
    assert trainer.callback_metrics["train/grad_norm"] > 0.1  # logged before clipping: the clip did something
    _, unclipped = fit(precision, clip=None)
    assert all(n > 0.1 for n in unclipped)


def test_fp16_loss_scaling_keeps_the_optimizer_unfused_and_clipped():
    # A fused step would unscale the fp16 gradients itself, after Lightning clipped them still scaled. (Lightning
    # turns 16-mixed into bf16-mixed on CPU: its fp16 plugin is given explicitly, with torch's CPU GradScaler.)
    from lightning.pytorch.plugins import MixedPrecision

    fp16 = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    trainer, norms = fit(None, clip=0.01, steps=3, plugins=[fp16])
    assert trainer.precision_plugin is fp16
    assert not trainer.optimizers[0].defaults["fused"]
    assert all(n <= 0.01 * 1.0001 for n in norms if n == n)  # a step the scaler skipped for inf is not clipped
