"""The model: GPT-2 and what runs it, with torch alone (no Lightning).

==============  ================================================================================================
``gpt``         ``GPTConfig``, ``GPT`` (nanoGPT-style), ``KVCache``: the network, its one loss entry and FLOP count
``dropout``     dropout whose masks are cheap on a CPU (4 elements per 64-bit draw); attention with dropout there
``loss``        token cross-entropy as (sum, count); the chunked loss that never holds all logits
``lora``        LoRA adapters: applied, merged, switched off
``generate``    KV-cache generation: temperature, top-k, top-p, seeds, stop tokens, batches of prompts
``tokenizer``   the GPT-2 BPE from bundled ranks; Hugging Face tokenizer files
``prompts``     prompt templates, shared by training and inference
``bigram``      a smoothed bigram language model: the studies' baseline and the known reward's book models
==============  ================================================================================================
"""

from lit_gpt5.old_paths import moved_names

__getattr__ = moved_names(__name__)  # `from lit_gpt5.model import GPT` (0.1, when this was one module)
