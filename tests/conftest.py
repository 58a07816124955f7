"""Fixtures shared by the tests.

Files from ``../shared`` (the book, the GPT-2 ranks) are reached only through ``shared_dir``: set ``LIT_GPT5_SHARED``
to point elsewhere. Without it the tests that need the book skip, except under CI (``CI`` set), where they fail.
Every test runs with its own empty cache directory and with sockets limited to loopback: nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import ipaddress
import os
import shutil
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BOOK_REL = Path("data/gutenberg/829-0.txt")
RANKS_REL = Path("assets/gpt2.tiktoken")
# Per-test limits (pytest-timeout), unless a test sets its own with @pytest.mark.timeout(N): a fast-tier test that
# hangs or starts training for real fails here instead of stalling the inner loop; a slow one gets room for its runs.
FAST_TIMEOUT, SLOW_TIMEOUT = 60, 600


if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under ``pytest -n 2`` two workers share the two cores: one thread each (and in the runs they start), where two
    # threads each would oversubscribe the cores and slow every OpenMP region far more than 2x.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT if item.get_closest_marker("slow") else FAST_TIMEOUT))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = Path(os.environ.get("LIT_GPT5_SHARED") or REPO.parent / "shared")
    if not (path / BOOK_REL).exists():
        msg = f"shared test data not found: {path / BOOK_REL} (set LIT_GPT5_SHARED to the folder holding data/)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def book_path(shared_dir: Path) -> Path:
    return shared_dir / BOOK_REL


@pytest.fixture(scope="session")
def book_text(book_path: Path) -> str:
    return book_path.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def book_tokens(book_text: str):
    import torch

    from lit_gpt5.data.gutenberg import clean_gutenberg
    from lit_gpt5.model.tokenizer import get_tokenizer

    return torch.tensor(get_tokenizer().encode_ordinary(clean_gutenberg(book_text)), dtype=torch.int32)


@pytest.fixture(autouse=True, scope="session")
def messages_on_the_console() -> None:
    """The package's messages on stdout/stderr, as in a plain Python process. pytest configures the root logger
    before the package is imported, so without this they would propagate to pytest's handlers instead (the rule
    ``lit_gpt5.log`` follows, tested in a process of its own by ``tests/test_log.py``)."""
    from lit_gpt5.log import to_console

    to_console()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("LIT_GPT5_CACHE", str(cache))
    monkeypatch.delenv("LIT_GPT5_GUTENBERG_MIRROR", raising=False)
    return cache


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI tests pass their arguments explicitly; pytest's own must not leak into LightningCLI."""
    monkeypatch.setattr(sys, "argv", ["lit_gpt5"])


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse connections to anything but loopback, so a test can never depend on (or hit) the internet."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise ConnectionRefusedError(f"tests may not reach the network ({host})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    real_getaddrinfo = socket.getaddrinfo

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host not in (None, "localhost") and not _is_ip(host):
            raise socket.gaierror(socket.EAI_NONAME, f"tests may not resolve {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


def _is_ip(host) -> bool:
    try:
        ipaddress.ip_address(host if isinstance(host, str) else host.decode())
        return True
    except ValueError:
        return False


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, Callable[[http.server.BaseHTTPRequestHandler], None]] = {}
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.hits.append(self.path)
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404)
        else:
            route(self)

    def log_message(self, *args) -> None:
        pass


def serve_bytes(data: bytes, status: int = 200) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    def route(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "text/plain; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return route


class LoopbackServer:
    """An HTTP server on 127.0.0.1 whose routes map a path to a handler function."""

    def __init__(self) -> None:
        handler = type("Handler", (_Handler,), {"routes": {}, "hits": []})
        self.handler = handler
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # A short poll: shutdown() waits for it, and every test with a server stops one.
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def routes(self) -> dict:
        return self.handler.routes

    @property
    def hits(self) -> list[str]:
        return self.handler.hits

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    server.thread.start()
    yield server
    with contextlib.suppress(Exception):
        server.stop()


@pytest.fixture
def seeded_tiktoken_cache(shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TIKTOKEN_CACHE_DIR holding r50k_base's ranks, so tiktoken's own encoding loads offline."""
    url = "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken"
    cache = tmp_path / "tiktoken"
    cache.mkdir()
    shutil.copy(shared_dir / RANKS_REL, cache / hashlib.sha1(url.encode()).hexdigest())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    return cache


def hf_model(vocab_size=50257, n_positions=64, n_embd=48, n_layer=3, n_head=4, seed=0):
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=50256,
        eos_token_id=50256,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    # Random init leaves LayerNorms at 1/0 and biases at 0; perturb them so every tensor's mapping is tested.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf")
    hf_model().save_pretrained(path)
    return path


@pytest.fixture
def quiet_lightning():
    """Lightning's INFO lines ("Seed set to ...") are not errors; in-process they also go to a stream pytest closes.
    Lightning's loggers only: lit_gpt5's own messages are part of what the tests check."""
    import logging

    loggers = [logging.getLogger(name) for name in ("lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory for a command, to check that it leaves nothing behind."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def refused(capsys, workdir, isolated_cache, quiet_lightning):
    """``refused(argv, pattern)``: the command refuses with one matching line and leaves nothing behind."""
    from tests.helpers import refusal

    return lambda argv, pattern, code=2: refusal(argv, capsys, workdir, isolated_cache, pattern, code)
