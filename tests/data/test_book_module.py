import torch

from lit_gpt5.data import GutenbergDataModule, tokenize_cached


def test_token_cache_reused_and_rebuilt_when_damaged(tmp_path):
    text = "It is a truth universally acknowledged. " * 50
    tokens = tokenize_cached(text, tmp_path)
    (path,) = tmp_path.glob("tokens-*-gpt2.safetensors")
    assert tokens.dtype == torch.uint16 and len(tokens) > 100
    mtime = path.stat().st_mtime_ns
    assert torch.equal(tokenize_cached(text, tmp_path), tokens)
    assert path.stat().st_mtime_ns == mtime  # read, not rewritten
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # one flipped bit in the token payload
    path.write_bytes(bytes(data))
    assert torch.equal(tokenize_cached(text, tmp_path), tokens)
    path.write_bytes(b"garbage")
    assert torch.equal(tokenize_cached(text, tmp_path), tokens)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left behind


def test_gutenberg_datamodule_from_local_file(book_path, isolated_cache):
    dm = GutenbergDataModule(text_path=str(book_path), batch_size=2)
    dm.prepare_data()
    assert len(list((isolated_cache / "local").glob("tokens-*.safetensors"))) == 1
    dm.setup("fit")
    assert sum(len(s) for s in dm.train_segments) + sum(len(s) for s in dm.val_segments) == 143_690
    assert len(dm.val_segments[0]) == 14_369
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 256)
