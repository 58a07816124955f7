"""Callbacks: text samples during training, and the batch measures Lightning's ThroughputMonitor needs."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only


def batch_size(batch) -> int:
    """Sequences in a batch ``(x, y)``; for ThroughputMonitor's ``batch_size_fn``."""
    return batch[0].size(0)


def batch_tokens(batch) -> int:
    """Tokens in a batch ``(x, y)``; for ThroughputMonitor's ``length_fn`` (its "items" are then tokens)."""
    return batch[0].numel()


class TextSampler(L.Callback):
    """Generates text from a fixed prompt before training and after every validation.

    Printed to the console and logged to TensorBoard (TEXT tab, tag ``samples``), so the run shows the model going
    from repeated random tokens to lines, punctuation and sentences. A fixed seed makes samples comparable across
    steps: what changes is the model, not the dice. For instruction tuning, give ``instruction`` (and ``input``)
    instead of ``prompt``: they are formatted with ``template`` as in training, and generation stops at
    ``<|endoftext|>``.
    """

    def __init__(
        self,
        prompt: str = "The Emperor of Lilliput",
        max_new_tokens: int = 120,
        temperature: float = 0.8,
        top_k: int | None = 50,
        top_p: float | None = None,
        seed: int = 1234,
        instruction: str | None = None,
        input: str = "",
        template: str = "alpaca",
    ) -> None:
        if instruction is not None:
            from lit_gpt5.sft import format_prompt

            prompt = format_prompt(instruction, input, template)
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.seed = seed
        self.samples: list[tuple[int, str]] = []

    def sample(self, pl_module: L.LightningModule) -> str:
        from lit_gpt5.generate import generate
        from lit_gpt5.tokenizer import EOT_ID, get_tokenizer

        tokenizer = get_tokenizer()
        idx = torch.tensor([tokenizer.encode(self.prompt)], device=pl_module.device)
        out = generate(
            pl_module.model,
            idx,
            self.max_new_tokens,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            seed=self.seed,
            stop_token=EOT_ID,
        )
        return tokenizer.decode(out[0].tolist())

    @rank_zero_only
    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        text = self.sample(pl_module)
        step = trainer.global_step
        self.samples.append((step, text))
        print(f"\n----- sample at step {step} -----\n{text}\n-----", flush=True)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # TensorBoard renders text as Markdown; a code block keeps the newlines the model learned.
                logger.experiment.add_text("samples", "```\n" + text + "\n```", step)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._log(trainer, pl_module)
