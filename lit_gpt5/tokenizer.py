"""The GPT-2 byte-level BPE, from ranks shipped inside the package so tokenizing never needs the network."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from importlib import resources

import tiktoken

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
def get_tokenizer() -> tiktoken.Encoding:
    """The GPT-2 tokenizer: ids identical to ``tiktoken.get_encoding("r50k_base")``, named ``gpt2``."""
    # The split regex is tiktoken's own r50k pattern, so ids stay identical as tiktoken evolves it.
    from tiktoken_ext.openai_public import r50k_pat_str

    return tiktoken.Encoding(
        name="gpt2",
        pat_str=r50k_pat_str,
        mergeable_ranks=parse_ranks(resources.files("lit_gpt5").joinpath("assets/gpt2.tiktoken").read_bytes()),
        special_tokens={EOT: EOT_ID},
        explicit_n_vocab=VOCAB_SIZE,
    )
