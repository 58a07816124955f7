"""Resuming a run: the one place that knows what a checkpoint holds and how a run continues from it.

==================  ============================================================================================
``state``           ``RunState``: what a checkpoint holds beyond weights and optimizer (the data position, the RNG,
                    the counters, the architecture), saved with every checkpoint and restored on resume; the loop
                    state Lightning needs patched; how the batch stream and the seeds know where the run is
``arguments``       which arguments of a resumed run come from the checkpoint, which may change (and how a change
                    is applied and reported), which are refused
``last_checkpoint``  ``ResumableCheckpoint``: ``last.ckpt`` every N steps, at the end, and on Ctrl-C or SIGTERM
==================  ============================================================================================

The batch stream (``lit_gpt5.data``), the callbacks and the tuning modules ask ``RunState``; none reads another
object's fields.
"""

from lit_gpt5.old_paths import moved_names

__getattr__ = moved_names(__name__)  # `from lit_gpt5.resume import settle_resumed_model` (0.1, one module)
