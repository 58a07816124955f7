"""Whole-or-absent files: the mode a file gets, and nothing left behind on an error."""

import os

import pytest

from lit_gpt5.files import atomic_path, current_umask, write_bytes_atomic


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_atomic_files_get_the_mode_of_a_file_written_the_usual_way(tmp_path, mask):
    old = os.umask(mask)
    try:
        assert current_umask() == mask
        write_bytes_atomic(tmp_path / "a.bin", b"x")
        with open(tmp_path / "b.bin", "wb") as f:  # the usual way
            f.write(b"x")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "a.bin").st_mode & 0o777 == os.stat(tmp_path / "b.bin").st_mode & 0o777 == 0o666 & ~mask


def test_an_error_while_writing_leaves_neither_the_file_nor_its_temporary(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "c.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []
