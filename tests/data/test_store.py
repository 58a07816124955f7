"""The token store: the same windows as the book in memory, incremental and resumable builds, every bad input in one
line and never a store a later run would read as complete."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from lit_gpt5.data import GutenbergDataModule, TokenWindowDataModule
from lit_gpt5.data.store import TokenStore
from lit_gpt5.data.store_build import build, sources
from lit_gpt5.errors import UserError


@pytest.fixture(scope="module")
def books(shared_dir):
    return [shared_dir / "data" / "gutenberg" / name for name in ("829-0.txt", "1342-0.txt", "84-0.txt")]


def make(path, *paths, **kwargs) -> dict:
    return build(path, sources(text_paths=[str(p) for p in paths]), progress=False, **kwargs)


def test_a_store_of_one_book_gives_its_windows_and_validation_batches(books, tmp_path):
    make(tmp_path / "s", books[0])
    memory = GutenbergDataModule(text_path=str(books[0]), block_size=64, batch_size=4, val_batch_size=16)
    stored = TokenWindowDataModule(store=str(tmp_path / "s"), block_size=64, batch_size=4, val_batch_size=16)
    for dm in (memory, stored):
        dm.prepare_data()
        dm.setup("fit")
    assert memory.val_set_names == stored.val_set_names == ["829-0"]
    a, b = memory.train_dataset(), stored.train_dataset()
    for i in (0, 1, 1000):
        assert all(torch.equal(u, v) for u, v in zip(a.global_batch(i), b.global_batch(i), strict=True))
    for (x1, y1), (x2, y2) in zip(memory.val_dataloader(), stored.val_dataloader(), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_three_books_per_source_validation_and_weights(books, tmp_path):
    make(tmp_path / "s", *books)
    dm = TokenWindowDataModule(store=str(tmp_path / "s"), block_size=64, batch_size=64, seed=1,
                               source_weights={"829-0": 1.0, "84-0": 3.0})  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    assert sorted(dm.val_set_names) == ["1342-0", "829-0", "84-0"] and len(dm.val_dataloader()) == 3
    stream = dm.train_dataset()
    starts = torch.cat([stream.window_starts.starts(i) for i in range(40)])
    seg = torch.searchsorted(dm.train_segments.offsets, starts, right=True) - 1
    picked = [dm.segment_sources[int(s)] for s in seg]
    share = picked.count("84-0") / len(picked)
    assert "1342-0" not in picked and 0.70 < share < 0.80  # weight 3 of 4


def test_builds_are_incremental_and_detect_changed_sources(books, tmp_path):
    store = tmp_path / "s"
    first = make(store, books[0])
    shard0 = (store / "shard-00000.bin").read_bytes()
    second = make(store, books[0], books[1])  # adds 1342 only
    assert (store / "shard-00000.bin").read_bytes() == shard0 and len(second["shards"]) == 2
    assert [d["key"] for d in second["documents"]][:1] == [d["key"] for d in first["documents"]]
    assert make(store, books[0], books[1])["shards"] == second["shards"]  # nothing new: nothing written
    changed = tmp_path / "829-0.txt"
    changed.write_text(books[0].read_text()[:300_000])
    other = tmp_path / "copy"
    make(other, changed)
    changed.write_text(books[0].read_text()[:200_000])
    with pytest.raises(UserError, match=r"changed since it was stored"):
        make(other, changed)


def test_an_interrupted_build_resumes_to_the_same_store(books, tmp_path, monkeypatch):
    clean = make(tmp_path / "clean", *books, shard_tokens=150_000)
    import lit_gpt5.data.store_build as store_build

    calls = {"n": 0}
    real = store_build.sha256_file

    def fail_on_second_shard(path):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the build stops after writing a shard, before listing it
        return real(path)

    monkeypatch.setattr(store_build, "sha256_file", fail_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        make(tmp_path / "s", *books, shard_tokens=150_000)
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert len(manifest["shards"]) == 1 and not (tmp_path / "s" / ".build.lock").exists()
    with pytest.raises(UserError, match=r"is not finished: its build stopped before it finished \(2 documents in 1"):
        TokenStore(tmp_path / "s")  # consistent up to its first shard, but not what was asked for: refused...
    assert len(TokenStore(tmp_path / "s", allow_unfinished=True).documents) == 2  # ...unless asked
    monkeypatch.setattr(store_build, "sha256_file", real)
    resumed = make(tmp_path / "s", *books, shard_tokens=150_000)
    assert resumed["shards"] == clean["shards"] and resumed["documents"] == clean["documents"]


def test_damaged_stores_are_refused_in_one_line(books, tmp_path):
    store = tmp_path / "s"
    make(store, books[0])
    shard = store / "shard-00000.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:1000])
    with pytest.raises(UserError, match=r"shard .*shard-00000.bin is truncated"):
        TokenStore(store)
    shard.unlink()
    with pytest.raises(UserError, match=r"shard .*shard-00000.bin .* is missing"):
        TokenStore(store)
    shard.write_bytes(data)
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["tokenizer_sha256"] = "0" * 64
    (store / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"built with tokenizer .* build a new store"):
        TokenStore(store)
    with pytest.raises(UserError, match=r"is not a folder"):
        TokenStore(tmp_path / "nope")


def test_a_full_disk_mid_build_leaves_the_store_as_it_was_and_the_build_resumes(books, tmp_path, monkeypatch, refused):
    import errno

    import lit_gpt5.data.store_build as store_build

    clean = make(tmp_path / "clean", *books, shard_tokens=150_000)
    real, written = store_build.write_tokens, {"n": 0}

    def fill_the_disk(path, tokens):
        written["n"] += 1
        if written["n"] == 2:  # half the second shard reaches the disk, then it is full
            tokens[: len(tokens) // 2].tofile(path)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, tokens)

    monkeypatch.setattr(store_build, "write_tokens", fill_the_disk)
    store = tmp_path / "s"
    argv = ["data", "build", "--out", str(store), "--shard_tokens", "150000", "--text_paths", *map(str, books)]
    refused(argv, r"No space left on device")
    assert sorted(p.name for p in store.iterdir()) == ["manifest.json", "shard-00000.bin"]  # no part, no lock
    assert len(TokenStore(store, allow_unfinished=True).manifest["shards"]) == 1
    monkeypatch.setattr(store_build, "write_tokens", real)
    resumed = make(store, *books, shard_tokens=150_000)
    assert resumed["shards"] == clean["shards"] and resumed["documents"] == clean["documents"]


def test_a_resumed_stream_is_the_same_for_any_ranks_and_workers(books, tmp_path):
    from torch.utils.data import DataLoader

    make(tmp_path / "s", *books)
    dm = TokenWindowDataModule(store=str(tmp_path / "s"), block_size=32, batch_size=4, seed=5)
    dm.setup("fit")
    reference = [dm.train_dataset().global_batch(g)[0] for g in range(10, 22)]
    for world, workers in ((1, 0), (1, 2), (2, 0), (2, 3), (4, 1)):
        per_rank = []
        for rank in range(world):
            ds = dm.train_dataset(global_start=10)  # resumed after 10 global batches
            ds.rank, ds.world_size = rank, world
            loader = DataLoader(ds, batch_size=None, num_workers=workers)
            per_rank.append([x for (x, _), _ in zip(loader, range(12 // world), strict=False)])
        seen = [per_rank[i % world][i // world] for i in range(12)]  # the global order: rank r takes g = r mod world
        assert all(torch.equal(a, b) for a, b in zip(seen, reference, strict=True)), (world, workers)


def test_a_store_being_built_is_refused(books, tmp_path):
    store = tmp_path / "s"
    store.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (store / ".build.lock").write_text(str(sleeper.pid))
        with pytest.raises(UserError, match=rf"being built by process {sleeper.pid}"):
            make(store, books[0])
        with pytest.raises(UserError, match=r"not a complete token store: it is being built"):
            TokenStore(store)
    finally:
        sleeper.kill()
        sleeper.wait()  # reaped, as init reaps a crashed builder: a zombie still answers kill(pid, 0)
    make(store, books[0])  # the lock of a process that is gone is taken over
    assert TokenStore(store).documents[0].length == 143_690


def test_bad_sources_are_one_line_and_leave_no_store(tmp_path, refused, capsys):
    binary = tmp_path / "zeros.txt"
    binary.write_bytes(b"\0" * 10_000)
    refused(["data", "build", "--out", str(tmp_path / "a"), "--text_paths", str(binary)], r"zeros.txt is not text")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 ".encode("latin-1") * 100)
    refused(["data", "build", "--out", str(tmp_path / "b"), "--text_paths", str(latin)], r"latin.txt is not UTF-8")
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text('{"text": "one document"}\n{"body": "no text field"}\n')
    refused(["data", "build", "--out", str(tmp_path / "c"), "--jsonl", str(jsonl)], r"line 2: no string field 'text'")
    refused(["data", "build", "--out", str(tmp_path / "d")], r"nothing to build from")
    for name in "abcd":
        assert not (tmp_path / name).exists()  # no store, not even an empty folder


def test_empty_documents_are_skipped_and_parquet_needs_its_column(tmp_path, capsys):
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text(json.dumps({"text": "word " * 400}) + "\n" + json.dumps({"text": "   "}) + "\n")
    manifest = build(tmp_path / "s", sources(jsonl=[str(jsonl)]), progress=False)
    assert len(manifest["documents"]) == 1 and "is empty after cleaning; not stored" in capsys.readouterr().err
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed (pip install '.[dev]')")
    import pyarrow as pa

    pq.write_table(pa.table({"body": ["a text"]}), tmp_path / "t.parquet")
    with pytest.raises(UserError, match=r"has no column 'text' \(its columns: body\); pass --text_field"):
        list(sources(parquet=[str(tmp_path / "t.parquet")]))
    pq.write_table(pa.table({"text": ["word " * 300, "more " * 300]}), tmp_path / "u.parquet")
    assert len(build(tmp_path / "p", sources(parquet=[str(tmp_path / "u.parquet")]), progress=False)["documents"]) == 2


def test_store_reads_do_not_load_the_shards(books, tmp_path):
    make(tmp_path / "s", *books)
    store = TokenStore(tmp_path / "s")
    doc = store.documents[1]
    window = store.read(doc, 1000, 257)
    assert window.dtype == np.dtype("<u2") and len(window) == 257
    assert not any(isinstance(v, np.memmap) for v in vars(store).values())
    assert os.path.getsize(tmp_path / "s" / "shard-00000.bin") == 2 * sum(d.length for d in store.documents)


@pytest.mark.slow
def test_fit_trains_on_a_store(books, tmp_path):
    from lit_gpt5.cli import main

    make(tmp_path / "s", *books)
    main(["fit", "--model.model_name=gpt-nano", "--model.n_layer=1", f"--data.store={tmp_path / 's'}",
          "--data.block_size=32", "--data.batch_size=4", "--data.val_batch_size=512", "--trainer.max_steps=2",
          "--trainer.val_check_interval=2", "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
          f"--trainer.default_root_dir={tmp_path / 'runs'}", "--sampler.max_new_tokens=0"])  # fmt: skip
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "runs" / "lightning_logs" / "version_0"))
    acc.Reload()
    assert {"val/loss/829-0", "val/loss/1342-0", "val/loss/84-0"} <= set(acc.Tags()["scalars"])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda m: m["documents"][0].update(length=m["documents"][0]["length"] + 10), r"document 0 .* runs past"),
        (lambda m: m["documents"][0].update(offset=-1), r"document 0 .* runs past|document 0 .*offset"),
        (lambda m: m.pop("dtype"), r"no 'dtype'"),
        (lambda m: m["documents"][0].pop("length"), r"document 0 .*no 'length'"),
        (lambda m: m["documents"][0].update(shard=7), r"document 0 .*shard 7"),
        (lambda m: m["shards"][0].pop("tokens"), r"shard 0 .*no 'tokens'"),
        (lambda m: m.update(documents="all of them"), r"'documents' .*not a list"),
        (lambda m: m.update(dtype="<f8"), r"dtype '<f8'"),
    ],
)
def test_a_damaged_manifest_is_refused_in_one_line_naming_what(books, tmp_path, damage, message):
    store = tmp_path / "s"
    make(store, books[2])
    manifest = json.loads((store / "manifest.json").read_text())
    damage(manifest)
    (store / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=message) as err:
        TokenStore(store)
    assert str(store) in str(err.value) and "\n" not in str(err.value)


def test_an_unfinished_store_is_refused_for_training_unless_asked(books, tmp_path, refused):
    store = tmp_path / "s"
    make(store, books[2])
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["complete"] is True
    manifest["complete"] = False  # what a build killed after its first shard leaves
    (store / "manifest.json").write_text(json.dumps(manifest))
    fit = ["fit", "--model.model_name=gpt-nano", "--model.n_layer=1", f"--data.store={store}", "--data.block_size=16",
           "--trainer.max_steps=1", "--trainer.accelerator=cpu"]  # fmt: skip
    refused(fit, r"is not finished: its build stopped before it finished .*--data.allow_unfinished_store true")
    dm = TokenWindowDataModule(store=str(store), block_size=16, batch_size=2, allow_unfinished_store=True)
    dm.prepare_data()  # asked for: trains on what it holds
    # A store of 0.1 (no "complete" field) is finished unless a build's lock is still there (a build was killed).
    del manifest["complete"]
    (store / "manifest.json").write_text(json.dumps(manifest))
    TokenStore(store)
    (store / ".build.lock").write_text("999999999")
    with pytest.raises(UserError, match="is not finished"):
        TokenStore(store)
    assert "NOT FINISHED" in __import__("lit_gpt5.commands.data", fromlist=["info"]).info(store)


def test_a_shard_rewritten_with_other_tokens_is_found_once_and_for_all(books, tmp_path, refused, monkeypatch, capsys):
    import lit_gpt5.data.store as store_module

    store = tmp_path / "s"
    make(store, books[0])
    hashed = []
    real = store_module.sha256_file
    monkeypatch.setattr(store_module, "sha256_file", lambda path: hashed.append(path) or real(path))
    TokenStore(store, verify=True)
    TokenStore(store, verify=True)
    assert len(hashed) == 1  # checked once: the second open reads only each shard's size and time
    shard = store / "shard-00000.bin"
    tokens = np.fromfile(shard, dtype="<u2")
    tokens[[10, 20]] = tokens[[20, 10]]  # other valid tokens, same size: what a size check cannot see
    tokens.tofile(shard)
    with pytest.raises(UserError, match=r"shard .*shard-00000.bin of the token store is not the one its manifest"):
        TokenStore(store, verify=True)
    refused(["data", "verify", str(store)], r"its sha256 differs")
    fit = ["fit", "--model.model_name=gpt-nano", "--model.n_layer=1", f"--data.store={store}", "--data.block_size=16",
           "--trainer.max_steps=1", "--trainer.accelerator=cpu"]  # fmt: skip
    refused(fit, r"its sha256 differs")


def test_data_verify_says_what_it_read(books, tmp_path, capsys):
    from lit_gpt5.commands.data import main

    make(tmp_path / "s", books[0])
    main(["verify", str(tmp_path / "s")])
    assert re.search(r"1 shards match the manifest \(0 MiB read in [\d.]+ s\)", capsys.readouterr().out)


def test_a_build_never_touches_a_folder_that_is_not_a_store(books, tmp_path, refused):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "shard-00000.bin").write_bytes(b"my own file")
    refused(["data", "build", "--out", str(mine), "--text_paths", str(books[0])], r"holds files but is not a token")
    assert (mine / "shard-00000.bin").read_bytes() == b"my own file"
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n\n  ")
    refused(["data", "build", "--out", str(tmp_path / "new"), "--text_paths", str(empty)], r"nothing was stored")
    assert not (tmp_path / "new").exists()  # no folder holding only a manifest
    missing = tmp_path / "missing.txt"
    refused(["data", "build", "--out", str(tmp_path / "new"), "--text_paths", str(missing)], r"check --text_paths$")
