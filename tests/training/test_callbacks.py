import lightning as L
import pytest
import torch

from lit_gpt5.training.callbacks import StepProgressBar, TextSampler
from lit_gpt5.training.module import GPTLitModule
from tests.training.test_module import FixedBatches


def test_progress_bar_counts_optimizer_steps_out_of_max_steps():
    batches = [(torch.randint(0, 50257, (2, 8)), torch.randint(0, 50257, (2, 8))) for _ in range(10)]
    bar = StepProgressBar()
    trainer = L.Trainer(
        max_steps=5,
        accumulate_grad_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[bar],
    )
    trainer.fit(GPTLitModule(model_name="gpt-nano", n_layer=1, warmup_steps=0), datamodule=FixedBatches(batches))
    assert (bar.train_progress_bar.n, bar.train_progress_bar.total) == (5, 5)  # not 10 micro-batches, not "0/-2"
    assert bar.train_progress_bar.desc.startswith("steps")


def test_sampler_does_not_crash_on_a_model_with_non_finite_weights():
    module = GPTLitModule(model_name="gpt-nano", n_layer=1)
    with torch.no_grad():
        module.model.transformer.h[0].mlp.c_fc.weight[0, 0] = float("nan")
    assert "not finite" in TextSampler(max_new_tokens=5).sample(module)


def test_coverage_is_counted_by_hand_on_a_tiny_text():
    from lit_gpt5.data import TokenWindowDataModule
    from lit_gpt5.training.callbacks import CoverageMonitor

    # 100 tokens, 10% held out at the end: 90 training tokens, 89 targets. Sequential windows of 10: the first
    # micro-batch of 2 covers targets 1..20, the second 21..40, and so on.
    dm = TokenWindowDataModule(torch.arange(100), block_size=10, batch_size=2, sampling="sequential")
    coverage = CoverageMonitor()
    trainer = L.Trainer(
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[coverage],
    )
    trainer.fit(GPTLitModule(model_name="gpt-nano", n_layer=1, warmup_steps=0), datamodule=dm)
    assert trainer.callback_metrics["train/coverage"].item() == pytest.approx(60 / 89)
    assert trainer.callback_metrics["train/epochs"].item() == pytest.approx(3 * 2 * 10 / 89)
