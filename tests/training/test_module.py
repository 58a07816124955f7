"""The training step: the loss of an optimizer step is the mean over its supervised tokens; non-finite steps."""

import lightning as L
import pytest
import torch

from lit_gpt5.data.batching import collate
from lit_gpt5.data.instructions import SFTDataset
from lit_gpt5.errors import NonFiniteLossError
from lit_gpt5.model.loss import IGNORE_INDEX
from lit_gpt5.model.tokenizer import get_tokenizer
from lit_gpt5.training.module import GPTLitModule
from lit_gpt5.training.settings import compile_blocks
from lit_gpt5.training.step import StepMean

TOK = get_tokenizer()


def grads_of_one_step(module, dm, accumulate: int) -> list[torch.Tensor]:
    """The gradients the optimizer stepped with: after the module's rescaling (no clipping is configured).

    Lightning runs the last micro-batch's backward inside ``optimizer.step(closure)`` and zeroes gradients only at
    the start of the next step, so after one step they are still on the parameters when training ends.
    """
    captured = []

    class Capture(L.Callback):
        def on_train_end(self, trainer, pl_module):
            captured.append([p.grad.clone() for p in pl_module.parameters()])

    trainer = L.Trainer(
        max_steps=1,
        accumulate_grad_batches=accumulate,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[Capture()],
    )
    trainer.fit(module, datamodule=dm)
    return captured[0]


class FixedBatches(L.LightningDataModule):
    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.batches, batch_size=None)


def test_accumulation_4x2_equals_one_batch_of_8():
    # Responses of very different lengths: per-micro-batch means would weight their tokens unequally.
    words = [1, 40, 3, 9, 60, 2, 25, 7]
    records = [{"instruction": f"Task {i}.", "output": "answer " * n} for i, n in enumerate(words)]
    ds = SFTDataset(records, TOK, 512, "plain")
    items = [ds[i] for i in range(8)]
    micro = [collate(items[i : i + 2]) for i in range(0, 8, 2)]
    assert len({int((y != IGNORE_INDEX).sum()) for _, y in micro}) == 4  # four different token counts
    torch.manual_seed(0)
    module = GPTLitModule(model_name="gpt-nano", n_layer=2, dropout=0.0, warmup_steps=0)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    accumulated = grads_of_one_step(module, FixedBatches(micro), accumulate=4)
    module.load_state_dict(state)
    module.step_mean = StepMean()
    whole = grads_of_one_step(module, FixedBatches([collate(items)]), accumulate=1)
    for a, b in zip(accumulated, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_all_masked_batch_gives_finite_loss_and_zero_gradient():
    x = torch.randint(0, 50257, (2, 16))
    y = torch.full((2, 16), IGNORE_INDEX)
    module = GPTLitModule(model_name="gpt-nano", n_layer=1, warmup_steps=0)
    grads = grads_of_one_step(module, FixedBatches([(x, y)]), accumulate=1)
    assert all(torch.count_nonzero(g) == 0 for g in grads)
    assert all(torch.isfinite(p).all() for p in module.parameters())


class NaNGradientAt(L.Callback):
    """Makes one parameter's gradient NaN during optimizer step ``step`` while the loss stays finite."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.before = self.after = None

    def on_train_start(self, trainer, pl_module):
        weight = pl_module.model.transformer.h[0].mlp.c_fc.weight
        weight.register_hook(lambda g: g * float("nan") if trainer.global_step == self.step else g)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            self.before = [p.detach().clone() for p in pl_module.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step + 1 and self.after is None:
            self.after = [p.detach().clone() for p in pl_module.parameters()]


def fit_with_nan_gradient(policy: str, steps: int = 6):
    torch.manual_seed(0)
    module = GPTLitModule(model_name="gpt-nano", n_layer=1, warmup_steps=0, on_nonfinite=policy)
    batches = [(torch.randint(0, 50257, (2, 16)), torch.randint(0, 50257, (2, 16))) for _ in range(steps)]
    nan = NaNGradientAt(step=3)
    trainer = L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        gradient_clip_val=1.0,
        callbacks=[nan],
    )
    trainer.fit(module, datamodule=FixedBatches(batches))
    return module, trainer, nan


def test_skip_drops_a_step_whose_gradient_is_not_finite(capsys):
    module, trainer, nan = fit_with_nan_gradient("skip")
    assert "non-finite gradient at step 3; skipping this optimizer step" in capsys.readouterr().err  # a warning: stderr
    assert trainer.global_step == 6 and module.run_state.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in module.parameters())
    # The skipped step changed nothing: the weights after it are the weights before it.
    assert all(torch.equal(a, b) for a, b in zip(nan.before, nan.after, strict=True))


def test_stop_refuses_a_step_whose_gradient_is_not_finite():
    with pytest.raises(NonFiniteLossError, match="gradient norm nan at step 3: stopped before the update"):
        fit_with_nan_gradient("stop")


def test_compile_is_ignored_on_a_cpu_with_a_warning_and_compiles_blocks_in_place_elsewhere(capsys):
    # torch 2.13's CPU compiler corrupted the heap on a compiled GPT-2 block at T = 33 and 64 and returned -inf for a
    # compiled 50,257-way cross-entropy at 32 rows: on a CPU the option is refused, not trusted.
    module = GPTLitModule(model_name="gpt-nano", n_layer=1, compile=True)
    assert compile_blocks(module.model, "cpu") is False
    assert "--model.compile is ignored on a CPU" in capsys.readouterr().err
    assert all(not hasattr(block, "_compiled_call_impl") or block._compiled_call_impl is None
               for block in module.model.transformer.h)  # fmt: skip
    names = list(module.state_dict())
    assert compile_blocks(module.model, "cuda") is True  # compiled lazily: nothing runs until the first forward
    assert all(block._compiled_call_impl is not None for block in module.model.transformer.h)
    assert list(module.state_dict()) == names  # in place: checkpoints keep the eager model's parameter names
