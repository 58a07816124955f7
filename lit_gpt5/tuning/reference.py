"""``Reference``: the frozen pi_ref every preference-tuning method compares its policy with, in one place.

RLHF's objective keeps the policy near a reference, ``E[r] - beta * KL(pi || pi_ref)``; DPO and RLOO both need
pi_ref's log-probabilities. It takes one of three forms:

* **a frozen copy** of a model (``init_from``'s, or ``--model.reference``'s): eval mode, no gradients, never a
  submodule of the LightningModule, so it is neither trained nor saved in checkpoints;
* **the policy with its LoRA adapters switched off** (LoRA and no separate reference): the ``init_from`` model
  itself, with no second copy in memory (``BaseView``);
* **precomputed log-probabilities** (DPO's ``precompute_reference``): computed once for every pair at the start,
  the model then dropped, the tables saved with the run state so a resumed run does not compute them again.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from lit_gpt5.model.gpt import GPT
from lit_gpt5.model.lora import adapters_disabled
from lit_gpt5.weights.checkpoints import frozen_model


class BaseView:
    """The base model inside an adapted one, as a model to call: the reference without a second copy of the
    weights. Each call runs ``model`` with its adapters switched off, and only for that call."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        with adapters_disabled(self.model):
            return self.model(*args, **kwargs)

    def token_losses(self, *args, **kwargs) -> torch.Tensor:
        with adapters_disabled(self.model):
            return self.model.token_losses(*args, **kwargs)

    def to(self, *args, **kwargs) -> BaseView:  # the model moves with the policy; nothing of its own to move
        return self


class Reference:
    """pi_ref for a policy (see the module docstring).

    Args:
        policy: the model being tuned.
        path: the reference's weights (a ``.ckpt`` or a Hugging Face directory); None with ``lora``.
        lora: the policy carries LoRA adapters and no separate reference was given: the reference is the policy
            with them switched off.
        keep_model: False when only precomputed log-probabilities will be used: no model is loaded until
            ``load_model`` is asked for one (to compute them).
    """

    def __init__(self, policy: GPT, path: str | None, lora: bool = False, keep_model: bool = True) -> None:
        if not lora and not path:
            raise ValueError("a reference needs weights (path) unless it is the policy without its LoRA adapters")
        self.policy, self.path, self.lora = policy, path, lora
        self.model: GPT | BaseView | None = self.load_model() if keep_model else None
        self.logps: dict[str, torch.Tensor] = {}  # precomputed: split -> (items, 2) log pi_ref of (chosen, rejected)

    def load_model(self) -> GPT | BaseView:
        """A reference model to call: the policy without adapters, or a frozen copy of ``path``'s model."""
        return BaseView(self.policy) if self.lora else frozen_model(self.path)

    def model_on(self, device: torch.device) -> GPT | BaseView:
        """The reference model, on ``device`` (moved there on first use)."""
        if self.model is None:
            raise RuntimeError("the reference model was not kept: only its precomputed log-probabilities are")
        self.model = self.model.to(device)
        return self.model

    # --- precomputed log-probabilities ------------------------------------------------------------------------------

    @property
    def precomputed(self) -> bool:
        return bool(self.logps)

    def use_precomputed(self, logps: dict[str, torch.Tensor]) -> None:
        """Answer from these tables from now on (split -> (items, 2)), and drop the model."""
        self.logps = dict(logps)
        if not self.lora:
            self.model = None

    def pair_logps(self, split: str, index: torch.Tensor) -> torch.Tensor:
        """The precomputed log pi_ref of the pairs ``index`` of ``split``: the chosen sides, then the rejected."""
        table = self.logps[split].to(index.device)
        return torch.cat([table[index, 0], table[index, 1]])

    def state_dict(self) -> dict:
        """What the run state saves: the precomputed tables (nothing for a model, which is never trained)."""
        return {"reference_logps": self.logps} if self.logps else {}

    def load_state_dict(self, state: dict) -> None:
        tables = state.get("reference_logps")
        if tables:
            self.use_precomputed(tables)
