"""Training a GPT-2 with Lightning: pretraining and instruction tuning, and what every trainer of the package shares.

===================  ===========================================================================================
``settings``         ``TrainingSettings``: the arguments every LightningModule of the package takes, checked, and
                     the model they build
``module``           ``GPTLitModule``: pretraining and SFT, the token-level loss
``step``             ``StepMean`` (an optimizer step's loss is the mean over its units), the non-finite policy
``optim``            ``Optimization``: AdamW, warmup + cosine, clipping that works for fused AdamW
``trainer``          precision ``auto``, the ``Trainer`` that accepts it, the CPU's freed-memory setting
``strategies``       ``BlockFSDPStrategy``: FSDP with GPT-2 blocks as units
``evaluation``       held-out figures logged at the step they belong to, one console line per validation
``callbacks``        text samples, the best checkpoint, the step progress bar, tokens/s, coverage of the text
``preflight``        before a run: one-line errors for what cannot work, the start-up lines
``peak``             this machine's measured matmul speed (cached), and roughly how long a run takes here
``memory_estimate``  the memory of a training step, before it runs
``memory_tracking``  the memory of a training step, tracked on fake tensors
===================  ===========================================================================================
"""
