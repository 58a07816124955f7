"""The GPT-2 byte-level BPE, from ranks shipped inside the package so tokenizing never needs the network."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from importlib import resources

import tiktoken

from lit_gpt5.compat import r50k_split_pattern
from lit_gpt5.errors import UserError

EOT = "<|endoftext|>"
EOT_ID = 50256
VOCAB_SIZE = 50257
# sha256 of OpenAI's r50k_base.tiktoken, the ranks GPT-2 was trained with. Checked on load: a damaged install
# would otherwise tokenize silently wrong.
RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"


def parse_ranks(data: bytes, source: str = "lit_gpt5/assets/gpt2.tiktoken") -> dict[bytes, int]:
    """Parse tiktoken's ``base64 rank`` lines after checking the file is byte-identical to OpenAI's."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != RANKS_SHA256:
        raise UserError(
            f"the GPT-2 BPE ranks in {source} have sha256 {digest[:12]}…, expected {RANKS_SHA256[:12]}…; "
            "the file is damaged: reinstall lit_gpt5"
        )
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@lru_cache(maxsize=1)
def mergeable_ranks() -> dict[bytes, int]:
    """The bundled GPT-2 BPE ranks (token bytes -> rank = id), checked."""
    return parse_ranks(resources.files("lit_gpt5").joinpath("assets/gpt2.tiktoken").read_bytes())


@lru_cache(maxsize=1)
def get_tokenizer() -> tiktoken.Encoding:
    """The GPT-2 tokenizer: ids identical to ``tiktoken.get_encoding("r50k_base")``, named ``gpt2``."""
    # The split regex is tiktoken's own r50k pattern, so ids stay identical as tiktoken evolves it.
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=r50k_split_pattern(),
        mergeable_ranks=mergeable_ranks(),
        special_tokens={EOT: EOT_ID},
        explicit_n_vocab=VOCAB_SIZE,
    )


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters, used by vocab.json / merges.txt."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def _split_by_merges(ranks: dict[bytes, int], token: bytes, below: int) -> list[bytes]:
    """Run BPE on ``token`` with only the merges ranked below ``below``: what was merged to create ``token``."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best, best_rank = None, below
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best, best_rank = i, rank
        if best is None:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


def save_hf_tokenizer(out_dir, model_max_length: int = 1024) -> None:
    """Write ``vocab.json``, ``merges.txt`` and tokenizer configs that ``GPT2TokenizerFast.from_pretrained`` reads,
    derived from the bundled ranks (a token's rank is its id, and merge priority equals rank)."""
    import json
    from pathlib import Path

    from lit_gpt5.files import write_bytes_atomic

    out = Path(out_dir)
    ranks = mergeable_ranks()
    byte_char = bytes_to_unicode()

    def show(token: bytes) -> str:
        return "".join(byte_char[b] for b in token)

    vocab = {show(token): rank for token, rank in ranks.items()}
    vocab[EOT] = EOT_ID
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = _split_by_merges(ranks, token, rank)
        if len(parts) != 2:
            raise RuntimeError(f"token {token!r} (rank {rank}) is not the merge of two earlier tokens")
        merges.append(f"{show(parts[0])} {show(parts[1])}")
    special = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}
    config = {
        **special,
        "tokenizer_class": "GPT2Tokenizer",
        "add_prefix_space": False,
        "model_max_length": model_max_length,
        "errors": "replace",
    }
    write_bytes_atomic(out / "vocab.json", json.dumps(vocab, ensure_ascii=False).encode("utf-8"))
    write_bytes_atomic(out / "merges.txt", ("#version: 0.2\n" + "\n".join(merges) + "\n").encode("utf-8"))
    write_bytes_atomic(out / "tokenizer_config.json", json.dumps(config, indent=2).encode())
    write_bytes_atomic(out / "special_tokens_map.json", json.dumps(special, indent=2).encode())
