"""A known reward for preference tuning: how much a text reads like one book rather than the others.

The DPO paper makes preference tuning measurable at small scale with a reward that is known exactly (there, a
sentiment classifier on IMDb continuations): pairs labelled by it from the reference model's own samples, and the
frontier of reward against KL for each method. Ours needs no download and no second network: smoothed bigram models
of the books' *training* parts (GPT-2 tokens; the same held-out split as pretraining), and

    reward(y | x) = 1/|y| * sum_t [ log p_target(y_t | y_t-1) - log p_others(y_t | y_t-1) ]

in nats per token, where ``p_others`` is the equal mixture of the other books' models and the first token's context
is the prompt's last token. It is deterministic, cheap (two table lookups per token), not the policy's own loss, and
a small model can move it (names, vocabulary and turns of phrase are what tell the books apart). How well it tells
the books' held-out passages apart is ``KnownReward.accuracy``.

Each bigram model is ``lit_gpt5.model.bigram.BigramLM`` with interpolated absolute discounting (Ney et al. 1994;
Kneser-Ney without the continuation counts): every token of the vocabulary gets a finite log-probability.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from lit_gpt5.data.segments import split_bounds
from lit_gpt5.errors import UserError
from lit_gpt5.model.bigram import BigramLM


class KnownReward:
    """``reward(y | x)``: log-likelihood ratio per token of ``target``'s bigram model against the other books'.

    Args:
        models: one ``BigramLM`` per book, by name (at least two).
        target: the name of the book whose style is rewarded.
    """

    def __init__(self, models: Mapping[str, BigramLM], target: str) -> None:
        if len(models) < 2:
            raise UserError(f"a known reward needs at least two books to tell apart, got {len(models)}")
        if target not in models:
            raise UserError(f"--target {target!r} is not one of the books: {', '.join(models)}")
        self.models, self.target = dict(models), target

    @classmethod
    def from_books(
        cls,
        books: Mapping[str, torch.Tensor],
        target: str,
        val_fraction: float = 0.1,
        split: str = "tail",
        interleave_blocks: int = 100,
        **bigram_kwargs,
    ) -> KnownReward:
        """From whole books' tokens: each model is counted on its book's training part only (the split of
        ``lit_gpt5.data.segments.split_bounds``, as in pretraining), so held-out passages stay unseen by it."""
        models = {}
        for name, tokens in books.items():
            train, _ = split_bounds(len(tokens), val_fraction, split, interleave_blocks)
            models[name] = BigramLM([tokens[a:b] for a, b in train], **bigram_kwargs)
        return cls(models, target)

    def book_logps(self, context: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-token log p_book(y_t | y_t-1) of every book: ``context`` (B,) the token before ``tokens`` (B, L)."""
        previous = torch.cat([context.reshape(-1, 1), tokens[:, :-1]], dim=1)
        return {name: model.logp(previous, tokens) for name, model in self.models.items()}

    def token_rewards(self, context: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) log p_target(y_t) - log p_others(y_t), ``p_others`` the equal mixture of the other books."""
        logps = self.book_logps(context.cpu(), tokens.cpu())
        others = torch.stack([v for k, v in logps.items() if k != self.target])
        return logps[self.target] - (torch.logsumexp(others, dim=0) - math.log(len(others)))

    def __call__(self, context: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The reward of each continuation (B,), nats per token: the mean of ``token_rewards`` over its tokens."""
        if tokens.ndim != 2 or tokens.size(1) == 0:
            raise ValueError(f"continuations must be (B, L) with L >= 1, got {tuple(tokens.shape)}")
        return self.token_rewards(context, tokens).mean(dim=1).float()

    def accuracy(self, passages: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """How well the models tell held-out passages apart. ``passages``: book name -> (N, L + 1) tokens, the first
        the context. Returns ``book_accuracy`` (the book whose model gives the passage the highest likelihood is its
        own), ``target_accuracy`` (reward > 0 exactly for the target's passages), the mean reward of each book's
        passages (``reward/<book>``), and the number of passages."""
        right = target_right = total = 0
        out: dict[str, float] = {}
        names = list(self.models)
        for name, rows in passages.items():
            if name not in self.models:
                raise UserError(f"held-out passages of {name!r}, which is not one of the books: {', '.join(names)}")
            logps = self.book_logps(rows[:, 0], rows[:, 1:])
            totals = torch.stack([logps[n].sum(1) for n in names])
            right += int((totals.argmax(0) == names.index(name)).sum())
            rewards = self(rows[:, 0], rows[:, 1:])
            target_right += int(((rewards > 0) == (name == self.target)).sum())
            total += len(rows)
            out[f"reward/{name}"] = float(rewards.mean())
        return {"book_accuracy": right / total, "target_accuracy": target_right / total, "passages": total, **out}


# --- the reward's spec: reward.json ------------------------------------------------------------------------------

SPEC_FORMAT = 1


def book_texts(books: list[dict], cache_dir: str | None = None) -> dict[str, str]:
    """Cleaned texts of the books of a spec (``{"text_path": ...}`` or ``{"book_id": ...}`` each), by name."""
    from lit_gpt5.data.book_module import BookSource

    sources = [BookSource(text_path=b.get("text_path"), book_id=b.get("book_id") or 829, cache_dir=cache_dir)
               for b in books]  # fmt: skip
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise UserError(f"the books must have distinct names (file stems or ids), got {', '.join(names)}")
    return {s.name: s.load().text for s in sources}


def reward_spec(books: list[dict], texts: dict[str, str], target: str, **settings) -> dict:
    """What ``reward.json`` holds: the books (where each comes from, and the sha256 of its cleaned text), the target,
    the split the bigram models are counted on and their smoothing; enough to rebuild the very same reward."""
    import hashlib

    return {
        "format": SPEC_FORMAT,
        "target": target,
        "books": [
            {**b, "name": name, "sha256": hashlib.sha256(texts[name].encode()).hexdigest()}
            for b, name in zip(books, texts, strict=True)
        ],  # fmt: skip
        "val_fraction": settings.get("val_fraction", 0.1),
        "split": settings.get("split", "tail"),
        "interleave_blocks": settings.get("interleave_blocks", 100),
        "discount": settings.get("discount", 0.75),
        "alpha": settings.get("alpha", 0.01),
    }


def reward_from_spec(spec: dict, texts: dict[str, str] | None = None, where: str = "the reward spec") -> KnownReward:
    """The ``KnownReward`` a spec describes; a one-line error if a book is missing or its text changed since."""
    import hashlib

    from lit_gpt5.model.tokenizer import get_tokenizer

    if spec.get("format") != SPEC_FORMAT:
        raise UserError(f"{where} has format {spec.get('format')!r}, not {SPEC_FORMAT}: rebuild it with this version")
    texts = texts if texts is not None else book_texts(spec["books"])
    for book in spec["books"]:
        if hashlib.sha256(texts[book["name"]].encode()).hexdigest() != book["sha256"]:
            raise UserError(f"the text of {book['name']} changed since {where} was written; rebuild the reward")
    tokenizer = get_tokenizer()
    tokens = {name: torch.tensor(tokenizer.encode_ordinary(text)) for name, text in texts.items()}
    return KnownReward.from_books(
        tokens, spec["target"], spec["val_fraction"], spec["split"], spec["interleave_blocks"],
        discount=spec["discount"], alpha=spec["alpha"],
    )  # fmt: skip


def load_reward(path: str) -> KnownReward:
    """The known reward of a ``reward.json`` (``lit-gpt5 reward pairs`` writes it beside the pairs)."""
    import json
    from pathlib import Path

    from lit_gpt5.files import read_input

    path = Path(path).expanduser()
    try:
        spec = json.loads(read_input(path, "reward spec", "--model.reward"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not JSON ({err.msg}); pass the reward.json of lit-gpt5 reward pairs") from None
    if not isinstance(spec, dict) or not {"target", "books"} <= set(spec):
        raise UserError(f"{path} is not a reward spec (no 'target' and 'books'); pass the reward.json it wrote")
    return reward_from_spec(spec, where=str(path))
