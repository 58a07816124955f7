"""Weights in and out: our checkpoint files, Hugging Face GPT-2 directories, PEFT adapters.

=================  =============================================================================================
``checkpoints``    our ``.ckpt`` files: checked before a run, the model read out of them, weights-only ones written
``checkpoint_io``  how every checkpoint file is written: whole or not at all
``hf``             Hugging Face GPT-2 directories in and out, exactly
``peft``           LoRA adapters out as the directory PEFT loads
=================  =============================================================================================
"""
