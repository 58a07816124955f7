"""lit_gpt5: train GPT-2 with PyTorch Lightning.

==============  ==================================================================================================
``model``       GPT-2 itself (``GPT``, ``GPTConfig``), its loss, LoRA, generation, the tokenizer, prompt templates,
                the bigram baseline
``weights``     our checkpoint files, Hugging Face GPT-2 and PEFT directories in and out
``resume``      everything a checkpoint holds to continue a run, and how a run continues from one
``data``        token windows of books and stores, instruction and preference records, the batch-stream contract
``training``    the LightningModule of pretraining and SFT, its step, optimizer, precision, callbacks, memory
``tuning``      preference tuning: DPO, RLOO, the reference model, rollouts, the known reward
``tools``       what studies and notebooks call: training runs, statistics over seeds, the machine line
``commands``    one module per ``lit-gpt5`` subcommand (``cli`` is ``fit``/``validate``/``test``)
==============  ==================================================================================================

Dependencies run one way, down this table (``tests/test_layout.py``); ``errors``, ``log``, ``files``, ``compat``
and ``old_paths`` are below all of it, ``cli`` and ``__main__`` above.
"""

from lit_gpt5 import old_paths as _old_paths

__version__ = "0.1.0"

_old_paths.install()  # `import lit_gpt5.lit_module` and the other paths of 0.1 keep working, with a warning
