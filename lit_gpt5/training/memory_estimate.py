"""How much GPU memory a training step needs, before you start it (the command: ``lit-gpt5 memory``).

Per device, in bytes: model states (parameters, gradients, AdamW moments; ZeRO paper, Rajbhandari et al. 2020,
section 3: 16 bytes per parameter in mixed precision, divided over ranks as far as the strategy shards them),
activations (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", section 4.1,
redone for this model's own layers and for fused SDPA attention, which never stores the T x T scores), and the loss
over the 50,257-way vocabulary, which is often the largest single term. ``benchmarks/memory.py`` checks every figure
against PyTorch's memory tracker following a real training step of the real model on fake tensors
(``lit_gpt5.training.memory_tracking``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lit_gpt5.errors import UserError
from lit_gpt5.model.gpt import CONFIGS, GPTConfig
from lit_gpt5.model.lora import ALL_TARGETS as LORA_ALL_TARGETS
from lit_gpt5.model.lora import EMBEDDING as LORA_EMBEDDING
from lit_gpt5.model.lora import TARGETS as LORA_TARGETS
from lit_gpt5.model.lora import check_rank

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true")
STRATEGIES = ("ddp", "fsdp", "deepspeed_stage_2", "deepspeed_stage_3")
GiB = 2**30
DEFAULT_LOSS_CHUNK = 512  # GPTLitModule's loss_chunk_size default: the estimate assumes the loss training uses
CONFIG_NAMES = tuple(CONFIGS)


@dataclass
class MemoryEstimate:
    """Bytes per device of one training step (forward, loss, backward, AdamW step), and the parameter count."""

    params: int  # the parameters as stored (fp32 masters in mixed precision; this device's shard when sharded)
    grads: int  # their gradients (this device's shard when sharded)
    optimizer: int  # AdamW's two moments (plus DeepSpeed's fp32 master copy), 0 when offloaded to the CPU
    activations: int  # everything the forward pass keeps for the backward pass
    logits: int  # the loss's own peak: logits, their float32 softmax and its gradient (or chunks of them)
    peak: int  # the most memory the step holds at one time
    n_params: int
    other: int = 0  # compute-dtype weight copies (autocast's cache, FSDP's gathered units) and communication buffers

    def table(self, gpu_memory: int | None = None) -> str:
        rows = [(k, getattr(self, k)) for k in ("params", "grads", "optimizer", "activations", "logits", "other")]
        lines = [f"{'term':<13}{'GiB':>10}"] + [f"{name:<13}{value / GiB:>10.2f}" for name, value in rows]
        lines.append(f"{'peak':<13}{self.peak / GiB:>10.2f}   ({self.n_params / 1e6:,.0f}M parameters)")
        if gpu_memory is not None:
            verdict = "fits" if self.peak <= gpu_memory else "does NOT fit"
            lines.append(f"{verdict} in {gpu_memory / GiB:.1f} GiB per device")
        return "\n".join(lines)


def n_params(config: GPTConfig) -> int:
    """Parameters of ``GPT(config)``, the tied embedding counted once (as ``GPT.num_params()``)."""
    c, bias = config.n_embd, int(config.bias)
    block = 12 * c * c + bias * 9 * c + (2 + 2 * bias) * c  # q,k,v,proj + fc, proj (+ biases), two LayerNorms
    return config.vocab_size * c + config.block_size * c + config.n_layer * block + (1 + bias) * c


def _config(model: str | GPTConfig) -> GPTConfig:
    return GPTConfig.from_name(model) if isinstance(model, str) else model


def estimate(
    model: str | GPTConfig,
    block_size: int,
    micro_batch_size: int,
    precision: str = "bf16-mixed",
    activation_checkpointing: bool = False,
    strategy: str = "ddp",
    devices: int = 1,
    cpu_offload: bool = False,
    loss_chunk_size: int = DEFAULT_LOSS_CHUNK,
    lora_r: int = 0,
    lora_targets: Sequence[str] = LORA_TARGETS,
) -> MemoryEstimate:
    """The memory of one training step of ``model`` (a ``GPTConfig.from_name`` name or a ``GPTConfig``) on each
    device: ``micro_batch_size`` sequences of ``block_size`` tokens per forward, AdamW, ``precision`` as Lightning
    names it, ``strategy`` over ``devices`` GPUs. ``loss_chunk_size``: the chunked loss training uses by default
    (``--model.loss_chunk_size``); 0 is the full-logits loss. ``lora_r`` > 0: LoRA of that rank on
    ``lora_targets`` (``--model.lora_r``): frozen base weights, adapters trained (one device or DDP)."""
    cfg = _config(model)
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if strategy not in STRATEGIES:
        raise UserError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    for name, value in (("block_size", block_size), ("micro_batch_size", micro_batch_size), ("devices", devices)):
        if not isinstance(value, int) or value <= 0:
            raise UserError(f"{name} must be a positive integer, got {value!r}")
    if block_size > cfg.block_size:
        raise UserError(f"block_size {block_size} is longer than the model's {cfg.block_size} positions")
    if loss_chunk_size < 0:
        raise UserError(f"loss_chunk_size must be >= 0, got {loss_chunk_size}")
    if lora_r and strategy != "ddp":
        raise UserError(f"the LoRA estimate is for one device or DDP (frozen weights replicated), not {strategy}")
    if cpu_offload and strategy == "ddp":
        raise UserError(
            "DDP keeps the whole optimizer on every GPU and cannot offload it; use --strategy deepspeed_stage_2 "
            "--cpu_offload (ZeRO-2 offload) or --strategy fsdp --cpu_offload"
        )

    n = n_params(cfg)
    t, c, v, layers = micro_batch_size * block_size, cfg.n_embd, cfg.vocab_size, cfg.n_layer
    block_weights = 12 * c * c  # the Linear weights of one block
    mixed = precision in ("bf16-mixed", "16-mixed")
    sharded_params = strategy in ("fsdp", "deepspeed_stage_3")
    deepspeed = strategy.startswith("deepspeed")
    # Bytes per element: parameters as stored, activations as computed, and the residual stream. Under AMP
    # autocast the residual stream stays float32 (LayerNorm runs in float32); FSDP and DeepSpeed run the model in
    # the 16-bit dtype itself (parameters gathered or kept in bf16, no autocast), so it is 16-bit there.
    stored = 2 if precision == "bf16-true" else 4
    compute = 4 if precision == "32-true" else 2
    residual = 4 if precision == "32-true" or (mixed and not sharded_params and not deepspeed) else 2

    # --- Model states (ZeRO paper, section 3) -----------------------------------------------------------------
    if deepspeed and mixed:
        # DeepSpeed keeps the model in 16 bits and an fp32 master copy inside the optimizer: 2 + 2 + 12 bytes.
        params, grads, optimizer = 2 * n, 2 * n, 12 * n
    else:
        # AMP keeps fp32 parameters, gradients and moments: 4 + 4 + 8 bytes (the same 16 as ZeRO's count);
        # bf16-true stores everything in bf16: 2 + 2 + 4; 32-true: 4 + 4 + 8.
        params, grads, optimizer = stored * n, stored * n, 2 * stored * n
    if strategy != "ddp":  # ZeRO-2 and up shard gradients and optimizer states; ZeRO-3 / FSDP parameters too
        grads, optimizer = -(-grads // devices), -(-optimizer // devices)
        params = -(-params // devices) if sharded_params else params
    if cpu_offload:
        optimizer = 0
        if sharded_params:
            params = grads = 0  # FSDP CPUOffload / ZeRO-3 offload_param keep the shards in host memory
    lora = _lora_sizes(cfg, lora_r, lora_targets) if lora_r else None
    if lora:
        # Frozen weights: no gradient, no moments; the adapted layers' weights held in the 16-bit autocast dtype
        # under mixed precision (lit_gpt5.model.lora.hold_frozen_in). Adapters: float32 with gradients and AdamW
        # moments.
        params = stored * n - ((stored - 2) * lora["adapted_weights"] if mixed else 0) + 4 * lora["adapter"]
        grads, optimizer = 4 * lora["adapter"], 8 * lora["adapter"]

    # --- Activations (Korthikanti et al. 2022, section 4.1), bytes per token of one block ----------------------
    # Their 34sbh + 5as^2b counts 16-bit LayerNorm inputs, unfused attention scores (the as^2b terms) and dropout
    # masks. What our Block saves for backward, with fused SDPA (flash / memory-efficient / CPU flash kernels):
    #   ln_1 input and ln_2 input (the residual stream)                        2 x residual
    #   c_attn input, q|k|v (one 3h tensor), SDPA output, c_proj input         (1 + 3 + 1 + 1) x compute
    #   c_fc input, c_fc output = GELU input (4h), GELU output (4h)            (1 + 4 + 4) x compute
    #   SDPA's log-sum-exp: one float32 per head and token                    4 x n_head / h
    # = 38 bytes per token and channel under AMP (34 in 16 bits, their figure without dropout and s^2 terms).
    per_token = c * (2 * residual + 15 * compute) + 4 * cfg.n_head + (2 * c if cfg.dropout > 0 else 0)
    if lora:
        # A frozen Linear keeps its weight for backward, not its input: only adapted layers keep their input (for
        # the adapter's A), plus A's r-wide output (for B).
        per_token += compute * (lora["r_per_token"] - c * lora["unadapted_inputs"])
    # With activation checkpointing each block keeps only its input.
    saved = t * layers * (c * residual if activation_checkpointing else per_token)
    saved += t * c * residual  # ln_f's input: the last residual stream
    # Recomputing one block (with checkpointing), and the gradients flowing through a block in backward (the
    # residual stream's, and the 4h-wide ones of the MLP), in the residual stream's dtype: measured ~24 bytes per
    # token and channel with a float32 stream (AMP), half that with FSDP's 16-bit one.
    backward_work = t * (per_token if activation_checkpointing else 0) + 6 * residual * t * c

    # --- The loss over the vocabulary -------------------------------------------------------------------------
    hidden = 4 if residual == 4 else compute  # ln_f's output dtype
    if loss_chunk_size == 0:
        # logits, their float32 copy, the float32 log-softmax saved for backward; in backward two float32 gradients
        # of (B x T x V) exist next to the saved log-softmax: 12 bytes per logit at the start of the backward pass.
        logits = 12 * t * v
        logits_kept = 4 * t * v  # an adapted head keeps no more (tracked: its low-rank logits are transient)
    else:
        # d(loss)/dW (float32) and d(loss)/dh, computed in the forward pass and held for backward; while a chunk is
        # processed, the output matrix in the compute dtype, and the chunk's logits, their float32 copy (log_softmax
        # casts a 16-bit input first) and the float32 log-softmax, turned into the gradient in place and written back
        # over the logits (on a GPU in one pass per chunk; a CPU takes a few rows at a time and needs less).
        chunk = min(loss_chunk_size, t)
        # An adapter on the tied embedding widens the output matrix by its rank (lit_gpt5.model.lora.TiedLoRAHead): the
        # widened float32 copy during the loss, whose d(loss)/dW is formed as in full tuning.
        head = lora_r if lora and lora["head"] else 0
        width = c + head
        logits_kept = (4 * v * width if not lora or head else 0) + hidden * t * width  # frozen head: no d(loss)/dW
        weight_copy = compute * v * width if residual == 4 and compute == 2 else 0  # fp32 weights cast for matmul
        fp32_copy = 4 if compute != 4 else 0  # log_softmax's float32 cast of a 16-bit chunk
        logits = logits_kept + weight_copy + chunk * v * (compute + fp32_copy + 4) + (4 * v * width if head else 0)

    # --- Other ----------------------------------------------------------------------------------------------------
    other = 0
    if mixed and not sharded_params and not deepspeed:
        # autocast casts each Linear weight to 16 bits once per forward and keeps the copy for backward (the full
        # loss the output matrix too).
        other = 2 * (layers * block_weights + (v * c if loss_chunk_size == 0 else 0))
        if lora:  # frozen float32 weights are cast (and kept for backward) too; the adapted ones are 16-bit already
            other = 2 * (layers * block_weights - lora["adapted_weights"] + lora["adapter"])
            other += 2 * v * c if loss_chunk_size == 0 else 0
    if sharded_params:
        # the gathered 16-bit parameters of the block in flight and of the root (embeddings, kept unsharded)
        other = compute * (block_weights + (v + cfg.block_size) * c)
    if strategy == "ddp" and devices > 1:
        other += grads  # DDP's gradient buckets: a second copy of the gradients (not measured here)

    # --- The peak: the largest of three moments -------------------------------------------------------------------
    # (a) the start of the loss's backward pass: all saved activations and the loss's own peak;
    # (b) the first block's backward: its recomputation (with checkpointing) and the gradients flowing through it;
    # (c) the end of backward: all gradients, plus the tied embedding's two dense (vocabulary x h) gradients (from
    #     the output projection and from the embedding lookup) being summed. The optimizer step adds nothing to
    #     (c): fused AdamW updates in place.
    grad_bytes = 2 if (deepspeed and mixed) or precision == "bf16-true" else 4
    at_loss = params + optimizer + saved + logits + other
    # FSDP gathers the output matrix in 16 bits: the chunked loss's backward hands its gradient over in that dtype
    # and frees the float32 accumulator before the blocks' backward starts.
    kept_in_backward = logits_kept - (2 * v * c if loss_chunk_size and sharded_params and mixed else 0)
    in_backward = params + optimizer + saved + kept_in_backward + backward_work + other
    embedding_grads = 0 if lora else 2 * grad_bytes * v * c  # frozen embeddings: no dense gradients to sum
    at_end = params + optimizer + grads + embedding_grads + (other if strategy == "ddp" and devices > 1 else 0)
    peak = max(at_loss, in_backward, at_end)
    return MemoryEstimate(params, grads, optimizer, saved, logits, peak, n, other)


def _lora_sizes(cfg: GPTConfig, r: int, targets: Sequence[str]) -> dict[str, int]:
    """Element counts of LoRA on ``targets``: adapter parameters, adapted (frozen) weights and biases, the r-wide
    activations kept per token, how many c-wide Linear inputs the unadapted layers no longer keep, and ``head``: 1
    with an adapter on the token embedding (``wte``), which the tied output head shares."""
    if not isinstance(r, int) or r <= 0:
        raise UserError(f"lora_r must be a positive integer (0: full fine-tuning), got {r!r}")
    c, layers = cfg.n_embd, cfg.n_layer
    # (in, out) of every Linear of a block, by LoRA target name; c_proj names the attention's and the MLP's.
    shapes = {"c_attn": [(c, 3 * c)], "c_proj": [(c, c), (4 * c, c)], "c_fc": [(c, 4 * c)]}
    unknown = [t for t in targets if t not in (*shapes, LORA_EMBEDDING)]
    if unknown:
        raise UserError(f"unknown LoRA target(s) {', '.join(unknown)}; choose among {', '.join(LORA_ALL_TARGETS)}")
    weights = {name: (o, i) for name in targets if name in shapes for i, o in shapes[name]}
    if LORA_EMBEDDING in targets:
        weights[LORA_EMBEDDING] = (cfg.vocab_size, c)
    check_rank(r, weights, flag="--lora_r")
    head = int(LORA_EMBEDDING in targets)
    adapted = [shape for name in targets if name in shapes for shape in shapes[name]]
    unadapted = [shape for name in shapes if name not in targets for shape in shapes[name]]
    bias = int(cfg.bias)
    return {
        "adapter": layers * sum(r * (i + o) for i, o in adapted) + head * r * (cfg.vocab_size + c),
        "adapted_weights": layers * sum(i * o + bias * o for i, o in adapted),
        "r_per_token": r * len(adapted),
        "unadapted_inputs": sum(i // c for i, _ in unadapted),
        "head": head,
    }


def suggestions(args: dict, gpu_memory: int) -> list[str]:
    """The cheapest changes, one at a time, that make the step fit; each with its own estimate."""
    found = []

    def tryit(label: str, **change) -> bool:
        est = estimate(**{**args, **change})
        if est.peak <= gpu_memory:
            found.append(f"{label}: {est.peak / GiB:.1f} GiB")
            return True
        return False

    if not args["loss_chunk_size"]:
        tryit("chunked loss (--model.loss_chunk_size 512)", loss_chunk_size=512)
    if not args["activation_checkpointing"]:
        tryit("activation checkpointing (--model.activation_checkpointing true)", activation_checkpointing=True)
    mb = args["micro_batch_size"]
    while mb > 1:
        mb //= 2
        accumulate = args["micro_batch_size"] // mb
        if tryit(f"micro-batch {mb} with {accumulate}x more accumulation", micro_batch_size=mb):
            break
    for devices in (2, 4, 8, 16, 32, 64):
        if devices > args["devices"] and tryit(f"FSDP over {devices} GPUs", strategy="fsdp", devices=devices):
            break
    if not args["lora_r"] and args["strategy"] == "ddp":
        tryit("LoRA, the base weights frozen (--model.lora_r 8)", lora_r=8)
    if not args["cpu_offload"]:
        tryit(
            "optimizer offloaded to the CPU (DeepSpeed ZeRO-2 offload)", strategy="deepspeed_stage_2", cpu_offload=True
        )
    together = dict(loss_chunk_size=args["loss_chunk_size"] or 512, activation_checkpointing=True, micro_batch_size=1)
    if not found:
        tryit("all of: chunked loss, activation checkpointing, micro-batch 1", **together)
    return found
