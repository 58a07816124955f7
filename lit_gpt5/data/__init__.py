"""Data: token windows of books for pretraining, instruction records for tuning, and the batch-stream contract both
follow.

==================  ==========================================================================================
``streams``         the index-addressed batch-stream contract (ranks, workers, resume) and evaluation batches
``samplers``        where training windows start: ``random``, ``shuffled`` or ``sequential``
``windows``         the token split, ``RandomWindowDataset``, validation windows, ``TokenWindowDataModule``
``gutenberg``       Project Gutenberg downloads, the verified cache, header and licence stripping
``books``           ``BookSource``, the token cache, ``GutenbergDataModule``
``protocols``       what the package reads from a data module or record data set, as ``typing.Protocol``
``records``         JSON/JSONL record files: validated reading, the held-out split by hash, atomic writing
``batching``        batches of examples of different lengths: one padding, bucketed shuffled epochs
``record_module``   ``RecordDataModule``: the shared base of the instruction and preference data modules
``instructions``    instruction records, ``SFTDataset`` (response-only labels), ``SFTDataModule``
``preferences``     preference pairs, ``PreferenceDataset``, ``PreferenceDataModule``
``gulliver``        the built-in instruction and preference sets derived from Gulliver's Travels
==================  ==========================================================================================
"""

from lit_gpt5.data.books import BookSource, GutenbergDataModule, tokenize_cached
from lit_gpt5.data.protocols import HeldOutSets, RecordDataset, TrainingData, WindowData
from lit_gpt5.data.samplers import SAMPLINGS, Sampling
from lit_gpt5.data.streams import EvalBatches, IndexedBatchStream, batch_loader, trainer_position, worker_shard
from lit_gpt5.data.windows import RandomWindowDataset, TokenWindowDataModule, split_tokens, validation_windows
from lit_gpt5.loss import IGNORE_INDEX

__all__ = [
    "IGNORE_INDEX",
    "SAMPLINGS",
    "BookSource",
    "EvalBatches",
    "GutenbergDataModule",
    "HeldOutSets",
    "IndexedBatchStream",
    "RandomWindowDataset",
    "RecordDataset",
    "Sampling",
    "TokenWindowDataModule",
    "TrainingData",
    "WindowData",
    "batch_loader",
    "split_tokens",
    "tokenize_cached",
    "trainer_position",
    "validation_windows",
    "worker_shard",
]
