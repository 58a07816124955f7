"""The one bigram model of the package: absolute discounting (the known reward's book models) and Jelinek-Mercer
interpolation (the studies' baseline), each against a computation by hand."""

import math

import pytest
import torch

from lit_gpt5.errors import UserError
from lit_gpt5.model.bigram import BigramLM

V = 6  # a small vocabulary for hand computations


def test_bigram_probabilities_by_hand_and_normalised():
    lm = BigramLM([torch.tensor([0, 1, 0, 1, 0, 2]), torch.tensor([3, 0])], vocab_size=V, discount=0.5, alpha=1.0)
    # Unigrams over all 8 tokens, add-1: counts 0:4 1:2 2:1 3:1 4:0 5:0 -> (c + 1) / 14.
    p1 = torch.tensor([5, 3, 2, 2, 1, 1], dtype=torch.float64) / 14
    # Context 0 is followed by 1, 1, 2 (bigrams within each segment only: never 2 -> 3): c(0) = 3, 2 types.
    expected = {1: (2 - 0.5) / 3 + 0.5 * 2 / 3 * p1[1], 2: (1 - 0.5) / 3 + 0.5 * 2 / 3 * p1[2], 4: 0.5 * 2 / 3 * p1[4]}
    for token, p in expected.items():
        assert lm.logp(torch.tensor(0), torch.tensor(token)).item() == pytest.approx(math.log(p))
    # A context never seen (5) falls back to the unigrams; context 2 ends a segment: never a context either.
    assert lm.logp(torch.tensor(5), torch.tensor(0)).item() == pytest.approx(math.log(p1[0]))
    assert lm.logp(torch.tensor(2), torch.tensor(3)).item() == pytest.approx(math.log(p1[3]))
    for context in range(V):  # every distribution sums to 1 and is positive everywhere
        logp = lm.logp(torch.full((V,), context), torch.arange(V))
        assert torch.isfinite(logp).all() and logp.exp().sum().item() == pytest.approx(1.0)


def test_interpolated_probabilities_and_the_held_out_loss_by_hand():
    train = [torch.tensor([0, 1, 0, 1, 0, 2]), torch.tensor([3, 0])]
    lm = BigramLM(train, vocab_size=V, alpha=1.0, interpolation=0.6)
    p1 = torch.tensor([5, 3, 2, 2, 1, 1], dtype=torch.float64) / 14  # add-one unigrams, as above
    # p(w | v) = 0.6 * c(v w) / c(v) + 0.4 * p1(w); context 0: c = 3 (followed by 1, 1, 2).
    assert lm.logp(torch.tensor(0), torch.tensor(1)).item() == pytest.approx(math.log(0.6 * 2 / 3 + 0.4 * p1[1]))
    assert lm.logp(torch.tensor(5), torch.tensor(2)).item() == pytest.approx(math.log(0.4 * p1[2]))  # unseen context
    held_out = [torch.tensor([0, 1, 5]), torch.tensor([4])]  # bigrams within segments: (0, 1), (1, 5)
    by_hand = -(math.log(0.6 * 2 / 3 + 0.4 * p1[1]) + math.log(0.6 * 0 / 2 + 0.4 * p1[5])) / 2
    assert lm.loss(held_out) == pytest.approx(by_hand)
    for context in (0, 1, 3):  # the contexts seen: proper distributions
        assert lm.logp(torch.full((V,), context), torch.arange(V)).exp().sum().item() == pytest.approx(1.0)
    # A context never seen keeps only the unigram share, (1 - lam) p1, as the studies' baseline always computed it.
    assert lm.logp(torch.full((V,), 5), torch.arange(V)).exp().sum().item() == pytest.approx(0.4)


def test_bad_settings_are_one_line():
    with pytest.raises(UserError, match="interpolation must be in"):
        BigramLM([torch.tensor([0, 1])], V, interpolation=1.5)
    with pytest.raises(UserError, match="at least one segment of two tokens"):
        BigramLM([torch.tensor([0])], V)
    with pytest.raises(UserError, match="token ids must lie in"):
        BigramLM([torch.tensor([0, 9])], V)
