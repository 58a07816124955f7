"""One module per ``lit-gpt5`` subcommand (``fit``, ``validate``, ``test`` and ``predict`` are ``lit_gpt5.cli``).

==============  ================================================================================================
``arguments``   ``CommandParser`` (one-line argument errors) and the argument types the commands share
``generate``    ``lit-gpt5 generate``: text from a checkpoint or a Hugging Face directory
``convert``     ``lit-gpt5 convert``: weights to and from Hugging Face GPT-2 and PEFT directories
``sft``         ``lit-gpt5 sft``: what the loss sees; the built-in instruction and preference sets as JSONL
``memory``      ``lit-gpt5 memory``: a training step's memory, before it runs
``reward``      ``lit-gpt5 reward``: the known-reward experiment, from the books to a policy's reward and KL
``data``        ``lit-gpt5 data``: token stores built, extended and described
==============  ================================================================================================
"""
