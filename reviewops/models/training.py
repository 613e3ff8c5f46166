"""What the torch training loops share (fine-tuning in `transformer.py`, pretraining in `pretrain.py`):
the device, length-bucketed batches, AdamW with the usual parameter groups, warm-up and linear
decay, and the autocast context."""

from __future__ import annotations

import random

# batches per length-sorted chunk: large enough to pad little, small enough to stay random
BUCKET_BATCHES = 50


def pick_device(device: str | None = None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def length_batches(lengths, batch_size: int, seed: int | random.Random) -> list[list[int]]:
    """One epoch's batches of row indices, each of similar lengths (little padding): shuffle, sort
    chunks of BUCKET_BATCHES batches by length, cut them into batches, shuffle the batches. The order
    depends on `seed` only (a `random.Random` is used, and advanced, as it is)."""
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    lengths = list(lengths)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    pool = batch_size * BUCKET_BATCHES
    batches = []
    for i in range(0, len(idx), pool):
        chunk = sorted(idx[i : i + pool], key=lambda j: lengths[j])
        batches.extend(chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def adamw(model, lr: float, weight_decay: float, device: str, **kwargs):
    """AdamW (fused on CUDA) decaying the weight matrices only: biases and LayerNorm weights (1-d)
    are left alone, as in BERT."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, fused=device.startswith("cuda"), **kwargs)


def warmup_then_linear_decay(optimizer, warmup_ratio: float, total_steps: int):
    """The learning rate rises linearly over the first `warmup_ratio` of the steps, then falls
    linearly to 0 at `total_steps` (step the scheduler after each optimiser step)."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), total_steps)


def autocast(device: str, bf16: bool = True):
    """bf16 autocast on CUDA; on CPU a context that does nothing."""
    from contextlib import nullcontext

    import torch

    if device.startswith("cuda") and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()
