"""``TrainingSettings``: the arguments every LightningModule of the package takes, checked, and the model they build.

``GPTLitModule``, ``DPOLitModule`` and ``RLOOLitModule`` all train a GPT-2 with AdamW: which model (a named size or
starting weights, LoRA), how its forward and loss run (activation checkpointing, the chunked loss, compilation) and
how it is optimized (learning rate, schedule, weight decay, betas, the non-finite policy). Those arguments are
written down once, here, with their meaning; each module takes them as ``**settings`` (flat on the command line:
``--model.learning_rate``) beside its own, and hands them to the components that use them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal

import lightning as L

from lit_gpt5.errors import UserError
from lit_gpt5.log import get_logger
from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.model.lora import TARGETS, apply_lora, hold_frozen_in
from lit_gpt5.training.optim import Optimization, check_schedule
from lit_gpt5.weights.checkpoints import load_model

log = get_logger(__name__)


@dataclass(frozen=True)
class TrainingSettings:
    """Which GPT-2 a run trains and how (``--model.<name>`` on the command line).

    Args:
        model_name: a ``GPTConfig.from_name`` size; ``model5`` is GPT-2 small (124M).
        n_positions, n_layer, n_head, n_embd, dropout, bias: override single fields of the named size
            (``n_positions`` is ``GPTConfig.block_size``: the longest context the model can see).
        init_from: start from these weights (a Hugging Face GPT-2 directory or a lit_gpt5 ``.ckpt``); the
            architecture is theirs, so ``model_name`` and the sizes are not used. Only weights are loaded: the
            optimizer, the LR schedule and the step start fresh (``--ckpt_path`` resumes a run instead).
        learning_rate: peak learning rate, reached after ``warmup_steps``.
        min_lr: learning rate at the end of the cosine decay.
        warmup_steps: optimizer steps of linear warmup.
        lr_decay_steps: optimizer step at which the cosine reaches ``min_lr``; default: the Trainer's ``max_steps``.
        weight_decay: AdamW decoupled weight decay, applied to matrices and embeddings only (not biases, norms).
        beta1, beta2: AdamW betas; 0.95 (not 0.999) keeps large-batch GPT training stable.
        activation_checkpointing: recompute block activations in backward to save memory.
        loss_chunk_size: project to the vocabulary and take the cross-entropy this many positions at a time, so the
            loss never holds a (batch x T x 50,257) float32 logits tensor (``lit_gpt5.model.loss``); same loss and
            gradients. 0: the plain full-logits loss.
        compile: compile each transformer block with ``torch.compile`` on a GPU (training, evaluation and
            generation); the loss over the vocabulary stays eager (the chunked loss is one matmul and one softmax
            per chunk already). Ignored on a CPU, with a warning: torch 2.13's CPU compiler corrupts the heap on a
            GPT-2 block at some sequence lengths (33, 64) and gets a 50,257-way cross-entropy wrong (``-inf``).
            Off by default: compiling costs minutes.
        on_nonfinite: what a NaN/inf loss or gradient does. ``stop``: end the run before the bad update, naming the
            step and the checkpoint to resume from. ``skip``: that optimizer step makes no update; training goes on.
        lora_r: LoRA rank; 0 (the default) trains every weight. With r > 0 the base weights are frozen (and held in
            16 bits under mixed precision) and only low-rank adapters on ``lora_targets`` train
            (``lit_gpt5.model.lora``).
        lora_alpha, lora_dropout: the adapters' scale (alpha / r) and input dropout.
        lora_targets: which layers get adapters: ``c_attn`` (attention q, k, v), ``c_proj`` (attention and MLP
            outputs), ``c_fc`` (MLP input), default these three; and ``wte``, the token embedding and the output head
            tied to it (one adapter on the shared matrix): in a small model most weights are there.
    """

    model_name: str = "model5"
    n_positions: int | None = None
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    dropout: float | None = None
    bias: bool | None = None
    init_from: str | None = None
    learning_rate: float = 6e-4
    min_lr: float = 6e-5
    warmup_steps: int = 50
    lr_decay_steps: int | None = None
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    activation_checkpointing: bool = False
    loss_chunk_size: int = 512
    compile: bool = False
    on_nonfinite: Literal["stop", "skip"] = "stop"
    lora_r: int = 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: list[str] | None = None

    def __post_init__(self) -> None:
        check_schedule(self.learning_rate, self.min_lr, self.warmup_steps, self.lr_decay_steps)
        if not isinstance(self.loss_chunk_size, int) or self.loss_chunk_size < 0:
            raise UserError(f"--model.loss_chunk_size must be >= 0 (0: no chunking), got {self.loss_chunk_size!r}")
        if self.on_nonfinite not in ("stop", "skip"):
            raise UserError(f"on_nonfinite must be 'stop' or 'skip', got {self.on_nonfinite!r}")
        if self.lora_targets is not None and not self.lora_targets:
            raise UserError(
                "--model.lora_targets is empty; name at least one layer (c_attn, c_proj, c_fc, wte) or drop it"
            )
        if self.lora_targets is not None and not self.lora_r:
            raise UserError(
                f"--model.lora_targets {list(self.lora_targets)} was given without --model.lora_r: no adapter is made "
                "without a rank; pass --model.lora_r N, or drop --model.lora_targets to train every weight"
            )
        check_model_args(self.model_name, self.dropout, self.sizes, self.init_from)

    @classmethod
    def check_names(cls, arguments: dict) -> None:
        """A one-line error for a name of a module's ``**settings`` that is not a setting (a typo in Python code: the
        command line refuses those itself). Called before ``TrainingSettings(**settings)``, which is the call
        jsonargparse reads to give every module the settings as flat arguments."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(arguments) - known)
        if unknown:
            raise UserError(
                f"unknown model argument(s) {', '.join(unknown)}; the shared ones are {', '.join(sorted(known))}"
            )

    def arguments(self) -> dict:
        """Every setting by name, defaults included: what a module records in its ``hparams``."""
        return asdict(self)

    @property
    def sizes(self) -> dict:
        """The ``GPTConfig`` fields the arguments override (None: the named size's)."""
        return dict(block_size=self.n_positions, n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd,
                    bias=self.bias)  # fmt: skip

    def optimization(self) -> Optimization:
        """The optimizer, schedule and clipping these settings describe."""
        betas = (self.beta1, self.beta2)
        return Optimization(
            self.learning_rate, self.min_lr, self.warmup_steps, self.lr_decay_steps, self.weight_decay, betas
        )

    def build_model(self) -> GPT:
        """The GPT these settings describe: ``init_from``'s weights or a fresh named size, with activation
        checkpointing and LoRA as asked."""
        if self.init_from:
            model = load_model(self.init_from, dropout=self.dropout)
            for field, value in self.sizes.items():
                if value is not None and getattr(model.config, field) != value:
                    raise UserError(
                        f"--model.init_from {self.init_from} has {field}={getattr(model.config, field)}, but {value} "
                        "was asked for; drop the size arguments when starting from weights"
                    )
        else:
            model = GPT(GPTConfig.from_name(self.model_name, dropout=self.dropout, **self.sizes))
        model.gradient_checkpointing = self.activation_checkpointing
        if self.lora_r:
            apply_lora(model, self.lora_r, self.lora_alpha, self.lora_dropout, tuple(self.lora_targets or TARGETS))
        return model


def prepare_model(model: GPT, settings: TrainingSettings, trainer: L.Trainer, compiled: bool) -> bool:
    """What a module does to its model in ``setup``, once the Trainer is known: LoRA's frozen weights held in the
    autocast dtype (half their memory, and the very matmuls autocast would run), and the blocks compiled in place on
    a GPU (once: ``compiled`` says whether they are already). Returns whether the blocks are compiled."""
    if settings.lora_r:
        hold_frozen_in(model, str(trainer.precision))
    if settings.compile and not compiled:
        return compile_blocks(model, trainer.strategy.root_device.type)
    return compiled


def compile_blocks(model: GPT, device_type: str) -> bool:
    """Compile each transformer block in place (parameter names and checkpoints stay the eager model's) on a GPU; on
    a CPU say why not. Returns whether it compiled."""
    if device_type == "cpu":
        log.warning(
            "lit_gpt5: --model.compile is ignored on a CPU: torch's CPU compiler crashes or miscomputes GPT-2's "
            "blocks and loss at some sequence lengths (seen with torch 2.13); training runs eager"
        )
        return False
    for block in model.transformer.h:
        block.compile()
    return True


def check_model_args(model_name: str, dropout: float | None, sizes: dict, init_from: str | None) -> None:
    """One-line errors for model arguments that cannot build a model (before anything is built or loaded)."""
    if dropout is not None and not 0.0 <= dropout < 1.0:
        raise UserError(f"--model.dropout must be in [0, 1), got {dropout}")
    for name in ("n_layer", "n_head", "n_embd", "block_size"):
        value = sizes[name]
        if value is not None and (not isinstance(value, int) or value <= 0):
            flag = "n_positions" if name == "block_size" else name
            raise UserError(f"--model.{flag} must be a positive integer, got {value!r}")
    if init_from:
        return
    config = GPTConfig.from_name(model_name)
    n_embd, n_head = sizes["n_embd"] or config.n_embd, sizes["n_head"] or config.n_head
    if n_embd % n_head:
        divisors = sorted(
            sorted((d for d in range(1, n_embd + 1) if n_embd % d == 0), key=lambda d: abs(d - n_head))[:3]
        )
        raise UserError(
            f"n_embd {n_embd} is not divisible by n_head {n_head} (model {model_name}); choose --model.n_head "
            f"among {', '.join(map(str, divisors))}, or change --model.n_embd"
        )
