"""Rollouts: continuations sampled from a policy, their log-probabilities, and where a policy stands on the frontier.

The one place that samples for preference tuning: the pairs of ``lit-gpt5 reward pairs`` (the reference's own
samples), the on-policy batches of ``lit_gpt5.tuning.rloo.RLOOLitModule``, and ``evaluate_policy``, which puts any
policy on the reward-KL plane:

- **reward**: the mean known reward (``lit_gpt5.tuning.rewards``) of fixed-seed samples from held-out prompts;
- **KL**: KL(pi || pi_ref) estimated from those same samples, the mean over sampled tokens of
  ``log pi(y_t | ...) - log pi_ref(y_t | ...)`` (nats per token; ``kl_per_sequence`` sums it over a continuation).

Sampling is plain ancestral sampling at temperature 1 (no top-k or top-p): the KL estimate is unbiased only for
samples drawn from pi itself. Continuations have a fixed length: the books hold no ``<|endoftext|>``, so a model
pretrained on them never learned to stop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from lit_gpt5.data.batching import pad_rows
from lit_gpt5.model.generate import generate_batch
from lit_gpt5.model.loss import IGNORE_INDEX


def rollout_seed(seed: int, *parts: object) -> int:
    """A 63-bit sampling seed for (seed, batch, ...): distinct streams for distinct batches, the same on a resume."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def sample_continuations(
    model, prompts: Sequence[Sequence[int]], samples: int, max_new_tokens: int, seed: int, temperature: float = 1.0
) -> torch.Tensor:
    """(P x samples, max_new_tokens) continuations of P prompts (token lists of any lengths), each prompt's
    ``samples`` rows together (row ``p * samples + i``), drawn by the model in eval mode, with the KV cache, from one
    seeded generator."""
    rows = [list(p) for p in prompts for _ in range(samples)]
    tokens = generate_batch(model, rows, max_new_tokens, temperature=temperature, seed=seed)
    return torch.tensor(tokens, dtype=torch.long, device=next(model.parameters()).device)


def continuation_inputs(
    prompts: Sequence[Sequence[int]], completions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` for ``token_losses``: each prompt followed by its continuation (row for row), padded at the end and
    shifted as instruction examples are (``pad_rows``), labels only on the continuation."""
    rows = []
    for prompt, completion in zip(prompts, completions.cpu(), strict=True):
        ids = torch.cat([torch.as_tensor(list(prompt), dtype=torch.long), completion])
        labels = ids.clone()
        labels[: len(prompt)] = IGNORE_INDEX
        rows.append((ids, labels))
    x, y = pad_rows(rows)
    return x.to(completions.device), y.to(completions.device)


def token_logps(
    model, prompts: Sequence[Sequence[int]], completions: torch.Tensor, chunk_size: int = 0
) -> torch.Tensor:
    """(N, L) log pi(y_t | prompt, y_<t) of every continuation token (with gradients if the model has them)."""
    x, y = continuation_inputs(prompts, completions)
    losses = model.token_losses(x, y, chunk_size)
    return -losses[y != IGNORE_INDEX].view(completions.shape)  # each row has exactly L targets, in order


@torch.no_grad()
def evaluate_policy(
    policy,
    reference,
    reward,
    prompts: Sequence[Sequence[int]],
    samples: int = 4,
    max_new_tokens: int = 32,
    seed: int = 0,
    batch_prompts: int = 64,
) -> dict:
    """Mean known reward and KL(pi || pi_ref) of fixed-seed samples from ``prompts`` (token lists): one point of the
    frontier. The same prompts and seed give every policy the same random numbers, so two policies' figures differ
    by what the policies do, not by the draw. Returns the means, their standard errors over prompts, and the
    per-sample arrays (``rewards``, ``kls``: per token; in prompt order)."""
    rewards, kls = [], []
    was_training = policy.training
    policy.eval()
    try:
        for start in range(0, len(prompts), batch_prompts):
            chunk = [list(p) for p in prompts[start : start + batch_prompts]]
            completions = sample_continuations(
                policy, chunk, samples, max_new_tokens, rollout_seed(seed, start // batch_prompts)
            )
            rows = [p for p in chunk for _ in range(samples)]
            rewards.append(reward(torch.tensor([p[-1] for p in rows]), completions))
            kl = token_logps(policy, rows, completions) - token_logps(reference, rows, completions)
            kls.append(kl.float().mean(dim=1).cpu())
    finally:
        policy.train(was_training)
    rewards_t, kls_t = torch.cat(rewards), torch.cat(kls)

    def per_prompt_sem(values: torch.Tensor) -> float:
        means = values.view(-1, samples).mean(1)
        return float(means.std(unbiased=True) / len(means) ** 0.5) if len(means) > 1 else float("nan")

    return {
        "reward": float(rewards_t.mean()),
        "reward_sem": per_prompt_sem(rewards_t),
        "kl": float(kls_t.mean()),
        "kl_sem": per_prompt_sem(kls_t),
        "kl_per_sequence": float(kls_t.mean()) * max_new_tokens,
        "samples": len(rewards_t),
        "rewards": rewards_t.tolist(),
        "kls": kls_t.tolist(),
    }


def decode_rows(tokenizer, rows: Sequence[Sequence[int]]) -> list[str]:
    return [tokenizer.decode(list(r)) for r in rows]
