"""``lasro bench memory``: the largest batch a LaSRO generator step fits in a given memory, extrapolated from the
peaks of real steps at two small batches.

Why an estimate: the question ("does batch 8 at 512² fit an 80 GB GPU?") is asked before one has the GPU, and the
full SDXL-Turbo step at batch 1 already fits on a CPU. What it measures, on any device:
- the peak of one whole generator step (forward, backward, optimiser step) at each probe batch, after a warm-up
  step that creates the optimiser's states: CUDA's peak allocation, or on CPU the process's peak resident set
  (VmHWM, reset before each step), so weights, LoRA gradients, AdamW states, saved activations, recomputation under
  gradient checkpointing and the backward pass's transients are all in it;
- as a breakdown, the weights' bytes and the activations autograd saves for backward (``saved_tensors_hooks``, each
  storage once, weights left out).
Assumed: the peak grows linearly with the batch (activations do; weights and optimiser states do not), fitted
through the two probes. Not covered: the collection's no-grad VAE decodes and reward calls and the surrogate's
own training steps, which hold less than a generator step at the same batch; CUDA's context (about 0.5 GB); on
CPU, the process's libraries sit in the fixed part.
"""
from __future__ import annotations

import torch

from lasro.bench.timing import lasro_trainer, read_peak, reset_peak

GIB, MIB = 2 ** 30, 2 ** 20


def saved_activation_bytes(loss_fn, exclude: set[int]) -> tuple[torch.Tensor, int]:
    """``loss_fn()``'s loss and the bytes autograd saves for its backward, each storage once, the ``exclude``d
    storages (the weights, resident anyway) left out."""
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in exclude:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _ = loss_fn()
    return loss, sum(seen.values())


def _weights(tr) -> dict[int, int]:
    """data pointer -> bytes of every weight and buffer the run keeps: the pipeline's parts and the method's
    networks (shared storages once)."""
    mods = [m for owner in (tr.gen.pipe, tr.gen, tr.method) for m in vars(owner).values()
            if isinstance(m, torch.nn.Module)]
    out = {}
    for t in (t for m in mods for t in [*m.parameters(), *m.buffers()]):
        s = t.untyped_storage()
        out[s.data_ptr()] = s.nbytes()
    return out


def fit_peaks(peaks: dict[int, float], budget: float) -> tuple[float, float, int | None]:
    """The line ``fixed + per_sample x batch`` through two measured ``peaks`` (batch -> bytes), and the largest
    batch whose peak on it is at most ``budget`` bytes (None when the peak does not grow with the batch)."""
    (b1, p1), (b2, p2) = sorted(peaks.items())
    per_sample = (p2 - p1) / (b2 - b1)
    fixed = p1 - per_sample * b1
    if per_sample <= 0:
        return fixed, per_sample, None
    return fixed, per_sample, max(int((budget - fixed) // per_sample), 0)


def bench_memory(cfg, memory_gib: float, probe_batches=(1, 2), target_batch: int = 8) -> dict:
    """Peak memory of the LaSRO generator step at two ``probe_batches``, fitted linearly; the largest batch under
    ``memory_gib`` and the estimated peak at ``target_batch``."""
    b1, b2 = sorted(probe_batches)
    if b1 == b2 or b1 < 1:
        raise ValueError("bench memory needs two different probe batch sizes of at least 1 (e.g. --probe-batches 1,2) "
                         "to separate the fixed and the per-sample memory")
    with lasro_trainer(cfg) as tr:
        dev = tr.acc.device
        weights = _weights(tr)

        def step(b: int) -> int:
            prompts = (tr.train_prompts * b)[:b]
            tr.gen_opt.zero_grad(set_to_none=True)
            loss, saved = saved_activation_bytes(lambda: tr.method.generator_loss(prompts), set(weights))
            tr.acc.backward(loss)
            tr.gen_opt.step()
            return saved

        step(b1)  # warm-up: AdamW's states exist from here on, as in training
        peaks, saved = {}, {}
        for b in (b1, b2):
            tr.gen_opt.zero_grad(set_to_none=True)  # the last step's gradients freed before the reading starts
            reset_peak(dev)
            saved[b] = step(b)
            peaks[b] = read_peak(dev)
    fixed, per_sample, largest = fit_peaks(peaks, memory_gib * GIB)
    return {
        "model": cfg.model.pretrained, "dtype": cfg.model.dtype, "device": str(dev),
        "resolution": tr.gen.resolution, "steps": len(tr.gen.timesteps),
        "gradient_checkpointing": cfg.model.gradient_checkpointing,
        "surrogate_gradient_checkpointing": cfg.surrogate.gradient_checkpointing,
        "regularizer": cfg.lasro.regularizer,
        "peak_mib": {str(b): round(p / MIB, 1) for b, p in peaks.items()},
        "weights_mib": round(sum(weights.values()) / MIB, 1),
        "saved_activations_mib": {str(b): round(s / MIB, 1) for b, s in saved.items()},
        "fixed_mib": round(fixed / MIB, 3), "per_sample_mib": round(per_sample / MIB, 3),
        f"estimated_peak_gib_batch_{target_batch}": round((fixed + per_sample * target_batch) / GIB, 2),
        "memory_gib": memory_gib, "largest_batch": largest,
    }
