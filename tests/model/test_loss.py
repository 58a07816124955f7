"""The chunked loss is the full-logits loss, computed a few positions at a time."""

import pytest
import torch

from lit_gpt5.model.loss import IGNORE_INDEX, cross_entropy_sum, linear_cross_entropy_sum, linear_token_losses
from lit_gpt5.training.module import GPTLitModule


def inputs(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    hidden = torch.randn(3, 11, 16, dtype=dtype, requires_grad=True)
    weight = torch.randn(97, 16, dtype=dtype, requires_grad=True)
    targets = torch.randint(0, 97, (3, 11))
    targets[0, :4] = IGNORE_INDEX  # a masked prompt, as in instruction tuning
    return hidden, weight, targets


@pytest.mark.parametrize("chunk_size", [1, 4, 33, 1000])
def test_chunked_sum_equals_the_full_loss_and_its_gradients(chunk_size):
    hidden, weight, targets = inputs()
    full, count = cross_entropy_sum(hidden @ weight.t(), targets)
    full_grads = torch.autograd.grad(full * 0.37, (hidden, weight))
    chunked, chunked_count = linear_cross_entropy_sum(hidden, weight, targets, chunk_size)
    chunked_grads = torch.autograd.grad(chunked * 0.37, (hidden, weight))
    assert count == chunked_count == 29
    torch.testing.assert_close(chunked, full, rtol=1e-6, atol=1e-5)
    for a, b in zip(chunked_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_chunked_token_losses_with_per_token_weights():
    # As in DPO: each sequence's log-probability gets its own weight, so no single upstream scalar exists.
    hidden, weight, targets = inputs(1)
    weights = torch.rand(3, 11)
    full = torch.nn.functional.cross_entropy(
        (hidden @ weight.t()).reshape(-1, 97), targets.reshape(-1), reduction="none", ignore_index=IGNORE_INDEX
    ).view(3, 11)
    full_grads = torch.autograd.grad((full * weights).sum(), (hidden, weight))
    chunked = linear_token_losses(hidden, weight, targets, 5)
    chunked_grads = torch.autograd.grad((chunked * weights).sum(), (hidden, weight))
    torch.testing.assert_close(chunked, full, rtol=1e-6, atol=1e-5)
    assert (chunked[0, :4] == 0).all()
    for a, b in zip(chunked_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_softmax_rows_change_nothing_but_time_and_memory(dtype):
    # A CPU takes the float32 softmax a few rows at a time (cache-sized), a GPU one pass per chunk: same bits.
    results = []
    for rows in (None, 1, 3, 8):
        hidden, weight, targets = inputs(2)
        hidden, weight = hidden.detach().to(dtype).requires_grad_(), weight.detach().to(dtype).requires_grad_()
        total, _ = linear_cross_entropy_sum(hidden, weight, targets, 8, softmax_rows=rows)
        losses = linear_token_losses(hidden, weight, targets, 8, softmax_rows=rows)
        grads = torch.autograd.grad(total * 0.37 + (losses * torch.linspace(0, 1, 11)).sum(), (hidden, weight))
        results.append((total, losses, *grads))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="softmax_rows must be None or a positive int, got 0"):
        linear_cross_entropy_sum(hidden, weight, targets, 8, softmax_rows=0)


def test_the_padded_vocabulary_changes_no_loss_or_gradient(monkeypatch):
    # Under autocast the chunked loss multiplies by a bf16 copy of the output matrix with zero rows appended (97 ->
    # 128 here, GPT-2's 50,257 -> 50,304): same losses and gradients, bit for bit, as the unpadded products, and the
    # weight's gradient shaped like the weight.
    import lit_gpt5.model.loss as loss_module

    assert loss_module.padded_vocab(97) == 128 and loss_module.padded_vocab(50257) == 50304
    assert loss_module.padded_vocab(128) == 128
    results = []
    for multiple in (loss_module.VOCAB_MULTIPLE, 1):
        monkeypatch.setattr(loss_module, "VOCAB_MULTIPLE", multiple)
        hidden, weight, targets = inputs(3)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            total, _ = linear_cross_entropy_sum(hidden, weight, targets, 8)
            losses = linear_token_losses(hidden, weight, targets, 8)
        sum_grads = torch.autograd.grad(total * 0.37, (hidden, weight))
        token_grads = torch.autograd.grad((losses * torch.linspace(0, 1, 11)).sum(), (hidden, weight))
        assert sum_grads[1].shape == token_grads[1].shape == weight.shape
        results.append((total, losses, *sum_grads, *token_grads))
    padded, plain = results
    for a, b in zip(padded, plain, strict=True):
        assert torch.equal(a, b)
    # and it is the loss: the full-logits one under autocast, to bf16 rounding
    hidden, weight, targets = inputs(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        full, _ = cross_entropy_sum(hidden @ weight.t(), targets)
    torch.testing.assert_close(padded[0], full, rtol=1e-3, atol=0)


def test_nothing_supervised_gives_zero_loss_and_gradient():
    hidden, weight, _ = inputs()
    total, count = linear_cross_entropy_sum(hidden, weight, torch.full((3, 11), IGNORE_INDEX), 4)
    total.backward()
    assert total.item() == 0.0 and count == 0
    assert not hidden.grad.any() and not weight.grad.any()


@pytest.mark.parametrize("autocast", [False, True])
def test_the_module_loss_is_the_same_chunked_or_not_pretraining_and_response_only(autocast):
    torch.manual_seed(0)
    x = torch.randint(0, 50257, (2, 24))
    y = torch.randint(0, 50257, (2, 24))
    y[1, :10] = IGNORE_INDEX
    results = []
    for chunk in (0, 7):
        torch.manual_seed(1)
        module = GPTLitModule(model_name="gpt-nano", n_layer=2, loss_chunk_size=chunk)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            total, count = module.loss_sum(x, y)
        (total / count).backward()
        results.append((total.detach(), [p.grad.clone() for p in module.parameters()]))
    (full, full_grads), (chunked, chunked_grads) = results
    if not autocast:
        torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)
        for a, b in zip(chunked_grads, full_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        return
    # bfloat16 keeps ~3 significant digits, and the two compute the same sums in a different order.
    torch.testing.assert_close(chunked, full, rtol=1e-3, atol=0)
    for a, b in zip(chunked_grads, full_grads, strict=True):
        assert (a - b).norm() <= 1e-2 * b.norm() + 1e-6


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    x, y = torch.randint(0, 50257, (2, 24)), torch.randint(0, 50257, (2, 24))
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(1)
        module = GPTLitModule(model_name="gpt-nano", n_layer=3, activation_checkpointing=checkpointing)
        total, count = module.loss_sum(x, y)
        (total / count).backward()
        results.append((total.detach(), [p.grad for p in module.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b)


class GatheringHead(torch.nn.Module):
    """An output projection whose weight lives elsewhere outside its forward, as DeepSpeed ZeRO-3 keeps a partitioned
    parameter: an empty tensor in between, the full matrix only while ``forward`` runs."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.full = weight
        self.weight = torch.nn.Parameter(torch.empty(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.full.t()


@pytest.mark.parametrize("chunk_size", [0, 7])
def test_the_one_loss_entry_chunked_full_and_partitioned(chunk_size):
    from lit_gpt5.model.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=97, n_layer=2, n_head=2, n_embd=16))
    x = torch.randint(0, 97, (3, 10))
    y = torch.randint(0, 97, (3, 10))
    y[0, :4] = IGNORE_INDEX
    expected_sum, expected_count = cross_entropy_sum(model(x), y)
    total, count = model.loss_sum(x, y, chunk_size)
    assert torch.allclose(total, expected_sum, atol=1e-5) and count == expected_count
    per_token = model.token_losses(x, y, chunk_size)
    assert per_token.shape == y.shape and torch.allclose(per_token.sum(), expected_sum, atol=1e-5)
    assert (per_token[0, :4] == 0).all()
    # A head whose weight cannot be read outside its forward: the chunked path falls back to the head's forward.
    model.lm_head = GatheringHead(model.transformer.wte.weight.detach())
    assert torch.allclose(model.loss_sum(x, y, chunk_size)[0], expected_sum, atol=1e-5)
    assert torch.allclose(model.token_losses(x, y, chunk_size).sum(), expected_sum, atol=1e-5)
