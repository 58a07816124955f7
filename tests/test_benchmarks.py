"""Benchmarks say where they ran, and the GPU check works before a GPU is there (its dry run, on the CPU)."""

from __future__ import annotations

import ast
import json
import runpy
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = sorted(p for p in (REPO / "benchmarks").glob("*.py") if not p.name.startswith("_"))


def calls_from(tree: ast.Module, name: str) -> set[str]:
    """The names a module-level function calls, directly or through other functions of the same module."""
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    seen, todo = set(), [name]
    while todo:
        for node in ast.walk(functions[todo.pop()]):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in seen:
                seen.add(node.func.id)
                if node.func.id in functions:
                    todo.append(node.func.id)
    return seen


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_every_benchmark_describes_the_machine_it_runs_on(script):
    """Every figure needs its machine: each script's ``main`` calls ``describe_machine`` (the line, or the record its
    results file holds), itself or through the script's own functions. Running them all would take hours."""
    tree = ast.parse(script.read_text())
    assert "describe_machine" in calls_from(tree, "main"), f"{script.name}: main() never calls describe_machine()"


def test_the_machine_line_names_cpu_flags_bf16_and_versions(capsys):
    runpy.run_path(str(REPO / "benchmarks" / "_machine.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert out.startswith("machine: ") and "native bf16: " in out and "flags: " in out
    assert "torch " in out and "lightning " in out


@pytest.mark.slow
def test_gpu_check_dry_run_prints_speed_and_memory_table(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry_run", "--json_out", str(tmp_path / "j")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "gpt-nano 4 x 64, precision " in out.stdout and "tokens/s, MFU" in out.stdout
    assert "estimate GiB" in out.stdout and "tracked on fake tensors (dry run)" in out.stdout
    report = json.loads((tmp_path / "j").read_text())
    assert report["model5"]["tokens_per_s"] > 0 and len(report["memory"]) == 2
    assert all(abs(row["error"]) < 0.25 for row in report["memory"])


def test_the_roofline_reads_gemms_from_onednn_and_mkl_logs():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from roofline import gemm_record
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    onednn = (
        "onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_bf16,undef,src:bf16::blocked:ab::f0 "
        "wei:bf16::blocked:ba::f0 dst:bf16::blocked:ab::f0,attr-scratchpad:user,,4096x768:768x3072,49.5"
    )
    assert gemm_record(onednn) == ("4096x768:768x3072", 2.0 * 4096 * 768 * 3072, 0.0495)
    batched = onednn.replace("4096x768:768x3072,49.5", "192x256x256:192x256x64,5.0")
    assert gemm_record(batched) == ("192x256x256:192x256x64", 2.0 * 192 * 256 * 256 * 64, 0.005)
    mkl = "MKL_VERBOSE SGEMM(T,N,16,64,32,0x7f,0x56,32,0x56,32,0x7f,0x56,16) 23.5us CNR:OFF Dyn:1 FastMM:1 TID:0"
    assert gemm_record(mkl) == ("SGEMM(T,N) 16x64x32", 2.0 * 16 * 64 * 32, 23.5e-6)
    info = "onednn_verbose,v1,info,cpu,runtime:OpenMP,nthr:2"
    assert gemm_record(info) is None and gemm_record("real training step: 1.0 s") is None


def test_the_roofline_times_cold_gemms_in_the_layouts_the_step_runs():
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from roofline import cold_matmul, cold_roofline, step_gemms
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    from lit_gpt5.model.gpt import GPTConfig

    config, tokens = GPTConfig.from_name("gpt-nano"), 64
    gemms = step_gemms(config, tokens, torch.float32)
    # Each product's three GEMMs, each in its layout: forward, input gradient, weight gradient.
    for (fwd, _, lf), (dgrad, _, ld), (wgrad, _, lw) in zip(gemms[0::3], gemms[1::3], gemms[2::3], strict=True):
        m, k, n = fwd
        assert dgrad == (m, n, k) and wgrad == (n, m, k) and (lf, ld, lw) == ("NT", "NN", "TN")
    cold = cold_roofline(config, tokens, torch.float32, torch.device("cpu"), repeats=1)
    assert [row["layout"] for row in cold["cold_gemms"][:3]] == ["NT", "NN", "TN"]
    assert len(cold["cold_gemms"]) == len(gemms) and cold["cold_flop_per_s"] > 0
    for layout in ("NN", "NT", "TN", "TT"):  # every layout multiplies operands of the shapes asked for
        assert cold_matmul(3, 4, 5, layout, torch.float32, torch.device("cpu"), 1) > 0


def test_the_roofline_lists_the_gemms_a_real_step_runs():
    """``step_gemms`` against the matrix products a real float32 step (the model, the chunked loss, backward) runs,
    shapes and counts, read from the profiler: a product modelled in another orientation fails here."""
    from collections import Counter

    import torch
    from torch.profiler import profile

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from roofline import CHUNK, step_gemms
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    from lit_gpt5.model.gpt import GPT, GPTConfig

    config = GPTConfig.from_name("gpt-nano")
    model = GPT(config)
    idx = torch.randint(0, config.vocab_size, (4, 256))  # 1,024 positions: two of the loss's chunks
    with profile(record_shapes=True) as prof:
        loss_sum, _ = model.loss_sum(idx, idx, chunk_size=CHUNK)
        loss_sum.backward()
    ran = Counter()
    for event in prof.events():
        shapes = [s for s in event.input_shapes if len(s) == 2]  # addmm's bias (1-d) left out; mm's out= comes last
        if event.name in ("aten::mm", "aten::addmm") and len(shapes) >= 2:
            (m, k), (_, n) = shapes[0], shapes[1]
            ran[(m, k, n)] += 1
    modelled = Counter()
    for shape, count, _layout in step_gemms(config, idx.numel(), torch.float32):
        modelled[shape] += count
    assert ran == modelled


@pytest.mark.slow
def test_the_roofline_times_the_gemms_inside_a_real_step(tmp_path, book_path):
    out = tmp_path / "gemms.txt"
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "roofline.py"), "--text_path", str(book_path), "--model",
         "gpt-nano", "--batch_size", "2", "--block_size", "32", "--steps", "2", "--warmup", "1", "--gemm_log",
         str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    table = out.read_text().splitlines()
    assert table[0].startswith("machine: ") and table[1].startswith("real training step: ")
    assert table[2].startswith("GEMMs per timed step: ") and table[2].count(" s") >= 1
    rows = [line for line in table[4:] if line and not line.startswith(("shape", "all: "))]
    assert rows, "no GEMM found in the step's log"
    assert table[-1].startswith("all: ") and "GFLOP/s" in table[-1]


def test_model5_run_on_several_books_clears_the_configs_single_book(tmp_path, book_path, shared_dir):
    # configs/model5.yaml names book 829; with --text_paths the data module must get the list alone, or it refuses
    # the run (both a single book and a list) after the script has started it.
    import argparse
    from pathlib import Path

    import yaml

    from lit_gpt5.data import GutenbergDataModule

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from model5_run import fit_command
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    books = [str(book_path), str(shared_dir / "data" / "gutenberg" / "84-0.txt")]
    args = argparse.Namespace(accelerator="cpu", sampling="random", text_path=None, max_steps=None, text_paths=books)
    data = yaml.safe_load((REPO / "configs" / "model5.yaml").read_text())["data"]["init_args"]
    for arg in fit_command(args, tmp_path):
        if arg.startswith("--data."):
            name, _, value = arg.removeprefix("--data.").partition("=")
            data[name] = yaml.safe_load(value)
    assert data["book_id"] is None and data["text_paths"] == [str(Path(p).resolve()) for p in args.text_paths]
    module = GutenbergDataModule(**data)
    assert len(module.hparams.text_paths) == 2


def test_the_data_constrained_driver_names_the_package_commit_of_each_run():
    # A run is recorded with the commit of the package it imported (a worktree's under PYTHONPATH): machines.csv
    # holds it beside the machine, since the study's runs span machines and must span one package version.
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import data_constrained_study as driver
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert driver.MACHINES[: len(driver.KEY)] == list(driver.KEY)
    git = ["git", "-C", str(REPO / "lit_gpt5")]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if not head:
        pytest.skip("not a git checkout")
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True, text=True).stdout.strip()
    assert driver.package_commit() == head + ("-dirty" if dirty else "")
    assert "torch" in driver.machine_line() and not driver.machine_line().startswith("machine:")


def test_a_study_run_imports_the_package_a_relative_pythonpath_names(tmp_path, monkeypatch):
    # A pinned study runs from a worktree with PYTHONPATH=. while each run starts in this checkout: the "." must still
    # mean the worktree, or the runs train with this checkout's package.
    pinned = tmp_path / "worktree"
    (pinned / "probe_package").mkdir(parents=True)
    (pinned / "probe_package" / "__init__.py").write_text("")
    script = tmp_path / "study.py"
    script.write_text(
        "import sys, probe_package\n"
        f"open({str(tmp_path / 'imported.txt')!r}, 'w').write(probe_package.__file__)\n"
        f"open({str(tmp_path / 'done.csv')!r}, 'w').write('seed\\n' + sys.argv[-1] + '\\n')\n"
    )
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from _study import Study
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    monkeypatch.chdir(pinned)
    monkeypatch.setenv("PYTHONPATH", ".")
    Study(script, tmp_path / "done.csv", ("seed",), (int,)).run_all([(0,)])
    assert (tmp_path / "imported.txt").read_text().startswith(str(pinned))


def test_run_length_benchmark_puts_the_estimate_beside_the_real_step(tmp_path, book_path):
    script = REPO / "benchmarks" / "run_length.py"
    tiny = ["--model", "gpt-nano", "--batch_size", "2", "--block_size", "32", "--steps", "2", "--warmup", "1"]
    run = subprocess.run(
        [sys.executable, str(script), "--text_path", str(book_path), *tiny, "--json", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "none in the start-up line (a run this small takes minutes)" in run.stdout, run.stdout
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["estimate"]["step"] > 0 and record["real"]["step_seconds"] > 0
    assert record["error"] == pytest.approx(record["estimate"]["step"] / record["real"]["step_seconds"] - 1)
    missing = subprocess.run(
        [sys.executable, str(script), "--text_path", str(tmp_path / "no-book.txt"), "--json", str(tmp_path / "m.json")],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert missing.returncode != 0 and not (tmp_path / "m.json").exists()
    assert missing.stderr.strip().splitlines()[-1].startswith("error: --text_path "), missing.stderr


def test_wgrad_layouts_times_every_weight_gradient_product_four_ways(tmp_path):
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from wgrad_layouts import VARIANTS
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    a, b = torch.randn(6, 3), torch.randn(6, 5)  # stored position-major, as the step's operands
    for name, variant in VARIANTS.items():  # each computes the weight gradient, or its transpose where it says so
        want = (a.t() @ b).t() if name.startswith("transposed") else a.t() @ b
        torch.testing.assert_close(variant(a, b), want)
    script = REPO / "benchmarks" / "wgrad_layouts.py"
    run = subprocess.run(
        [sys.executable, str(script), "--model", "gpt-nano", "--tokens", "64", "--repeats", "1", "--precision",
         "float32", "--json", str(tmp_path / "w.json")],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads((tmp_path / "w.json").read_text())
    assert len(record["rows"]) == 5  # attention in and out, MLP in and out, the loss's chunk
    assert all(set(row["ms"]) == set(VARIANTS) for row in record["rows"])
    bad = subprocess.run(
        [sys.executable, str(script), "--model", "gpt-9", "--json", str(tmp_path / "bad.json")],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert bad.returncode != 0 and not (tmp_path / "bad.json").exists()
    assert bad.stderr.strip().splitlines()[-1].startswith("error: --model gpt-9: unknown"), bad.stderr
