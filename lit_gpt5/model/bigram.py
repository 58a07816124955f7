"""A smoothed bigram language model of token sequences: the one bigram model of the package.

Two uses, two smoothings of the same counts:

* the studies' model-free baseline (how predictable a held-out text is from its training text alone):
  Jelinek-Mercer interpolation, ``p(w | v) = lam * c(v w) / c(v) + (1 - lam) * p_1(w)`` with add-one unigrams
  (``interpolation=lam``, ``alpha=1``; ``lit_gpt5.tools.studies.bigram_loss``);
* the known reward's book models (``lit_gpt5.tuning.rewards``): interpolated absolute discounting (Ney et al. 1994;
  Kneser-Ney without the continuation counts), ``p(w | v) = max(c(v w) - d, 0) / c(v) + d * N1+(v .) / c(v) *
  p_1(w)`` with add-``alpha`` unigrams (the default).

Every token of the vocabulary gets a finite log-probability, and bigrams are counted within each segment, never
across two. A context never seen gets ``p_1(w)`` with absolute discounting, and ``(1 - lam) * p_1(w)`` with
interpolation: the studies' baseline has always been computed so (notebook 02's bigram losses rest on it), which
leaves the probabilities after an unseen context summing to ``1 - lam`` rather than 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lit_gpt5.errors import UserError


class BigramLM:
    """Bigram and unigram counts of ``segments``, and smoothed log-probabilities from them.

    Args:
        segments: 1-D token tensors; bigrams are counted within each, never across two.
        vocab_size: ids are ``0 .. vocab_size - 1`` (50,257 for GPT-2).
        discount: ``d`` of absolute discounting, in (0, 1); not used with ``interpolation``.
        alpha: add-alpha smoothing of the unigrams, > 0: every token keeps a non-zero probability.
        interpolation: ``lam`` in [0, 1] for Jelinek-Mercer interpolation instead of absolute discounting (0: the
            unigram model alone).
    """

    def __init__(
        self,
        segments: Sequence[torch.Tensor],
        vocab_size: int = 50257,
        discount: float = 0.75,
        alpha: float = 0.01,
        interpolation: float | None = None,
    ) -> None:
        if not 0 < discount < 1 or not alpha > 0:
            raise UserError(f"discount must be in (0, 1) and alpha > 0, got {discount} and {alpha}")
        if interpolation is not None and not 0 <= interpolation <= 1:
            raise UserError(f"interpolation must be in [0, 1], got {interpolation}")
        tokens = [s.long().flatten() for s in segments if s.numel() > 1]
        if not tokens:
            raise UserError("a bigram model needs at least one segment of two tokens or more")
        if max(int(t.max()) for t in tokens) >= vocab_size or min(int(t.min()) for t in tokens) < 0:
            raise UserError(f"token ids must lie in [0, {vocab_size})")
        self.vocab_size, self.discount, self.interpolation = vocab_size, discount, interpolation
        keys = torch.cat([t[:-1] * vocab_size + t[1:] for t in tokens])
        self.keys, counts = torch.unique(keys, sorted=True, return_counts=True)
        self.counts = counts.double()
        contexts = torch.cat([t[:-1] for t in tokens])
        self.context_total = torch.bincount(contexts, minlength=vocab_size).double()
        self.context_types = torch.bincount(self.keys // vocab_size, minlength=vocab_size).double()
        unigram = torch.bincount(torch.cat(tokens), minlength=vocab_size).double() + alpha
        self.unigram = unigram / unigram.sum()

    def logp(self, previous: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        """log p(token | previous), elementwise over tensors of the same shape (float64)."""
        previous, token = previous.long(), token.long()
        key = previous * self.vocab_size + token
        at = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)
        count = torch.where(self.keys[at] == key, self.counts[at], torch.zeros((), dtype=torch.float64))
        total = self.context_total[previous]
        seen = total > 0
        total = total.clamp(min=1)
        p1 = self.unigram[token]
        if self.interpolation is not None:
            lam = self.interpolation
            return (lam * torch.where(seen, count / total, torch.zeros((), dtype=torch.float64)) + (1 - lam) * p1).log()
        p = (count - self.discount).clamp(min=0) / total + self.discount * self.context_types[previous] / total * p1
        return torch.where(seen, p, p1).log()

    def loss(self, segments: Sequence[torch.Tensor]) -> float:
        """The mean negative log-likelihood (nats per token) of every bigram within ``segments``: a held-out loss."""
        pairs = [s.long().flatten() for s in segments if s.numel() > 1]
        if not pairs:
            raise UserError("a held-out loss needs at least one segment of two tokens or more")
        previous, token = torch.cat([p[:-1] for p in pairs]), torch.cat([p[1:] for p in pairs])
        return float(-self.logp(previous, token).mean())
