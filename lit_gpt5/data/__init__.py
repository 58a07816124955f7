"""Data: token windows of books for pretraining, instruction records for tuning, and the batch-stream contract both
follow. This package's names (below) are the data API other projects import: ``from lit_gpt5.data import
GutenbergDataModule``.

==================  ==========================================================================================
``streams``         the index-addressed batch-stream contract (ranks, workers, resume) and evaluation batches
``starts``          where training windows start (``--data.sampling``): ``random``, ``shuffled``, ``sequential``
``segments``        the one split of a document (``split_bounds``); token segments in memory, windows read from them
``windows``         ``RandomWindowDataset``, validation windows, the token split
``window_module``   ``TokenWindowDataModule``: windows of any token tensors, or of a token store
``gutenberg``       Project Gutenberg downloads, the verified cache, header and licence stripping
``book_module``     ``BookSource``, the token cache, ``GutenbergDataModule``
``store``           a token store on disk: reading it (``TokenStore``, windows by ``pread``), its shards checked
``store_manifest``  a store's manifest: its fields checked, whether its build finished, its identity
``store_build``     building a token store (``lit-gpt5 data build``)
``protocols``       what the package reads from a data module or record data set, as ``typing.Protocol``
``records``         JSON/JSONL record files: validated reading, the held-out split by hash, atomic writing
``batching``        batches of examples of different lengths: padding, packing, bucketed shuffled epochs
``record_module``   ``RecordDataModule``: the shared base of the instruction, preference and prompt data modules
``instructions``    instruction records, ``SFTDataset`` (response-only labels), ``SFTDataModule``
``preferences``     preference pairs, ``PreferenceDataset``, ``PreferenceDataModule``
``rollout_prompts`` prompts for on-policy RL, ``PromptDataset``, ``PromptDataModule``
``gulliver``        the built-in instruction and preference sets derived from Gulliver's Travels
==================  ==========================================================================================
"""

from lit_gpt5.data.book_module import BookSource, GutenbergDataModule, tokenize_cached
from lit_gpt5.data.protocols import HeldOutSets, RecordDataset, TrainingData, WindowData
from lit_gpt5.data.starts import SAMPLINGS, Sampling
from lit_gpt5.data.streams import EvalBatches, IndexedBatchStream, batch_loader, trainer_position, worker_shard
from lit_gpt5.data.window_module import TokenWindowDataModule
from lit_gpt5.data.windows import RandomWindowDataset, split_tokens, validation_windows
from lit_gpt5.old_paths import moved_names

__all__ = [
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

__getattr__ = moved_names(__name__)  # 0.1's `from lit_gpt5.data import IGNORE_INDEX`
