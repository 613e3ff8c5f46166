"""What the torch loops share (fine-tuning in `transformer.py`, pretraining in `pretrain.py`, inference in
`transformer.py` and `onnx_export.py`): the device, length bucketing (shuffled batches of similar
lengths for training, the cheapest groups for inference), AdamW with the usual parameter groups,
warm-up and linear decay, and the autocast context."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from reviewops.errors import InputError

# batches per length-sorted chunk: large enough to pad little, small enough to stay random
BUCKET_BATCHES = 50
# the fixed cost of one model call, in padded tokens, that `length_groups` weighs against padding
ONNX_CALL_COST, TORCH_CALL_COST = 32.0, 64.0


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


def length_groups(lengths: Sequence[int], max_rows: int, call_cost: float) -> list[np.ndarray]:
    """Row indices split into batches that waste the least on padding.

    Rows are sorted by length and cut where the total cost is lowest, a batch costing `call_cost` (the
    model's fixed cost of one call, in tokens) plus rows x its longest row (every row is padded to it),
    with at most `max_rows` rows per batch. A transformer's time is close to linear in padded tokens, so
    a short review does not pay for a long one beside it, and calls stay big where lengths are alike."""
    n = len(lengths)
    if n == 0:
        return []
    if max_rows < 1:
        raise InputError(f"batch_size must be at least 1, not {max_rows}")
    order = np.argsort(np.asarray(lengths), kind="stable")
    ordered = np.asarray(lengths, dtype=np.float64)[order]
    best = np.zeros(n + 1)  # best[j]: the lowest cost of the first j rows in length order
    cut = np.zeros(n + 1, dtype=np.int64)  # where the last batch of that solution starts
    for j in range(1, n + 1):
        lo = max(0, j - max_rows)
        costs = best[lo:j] + call_cost + (j - np.arange(lo, j)) * ordered[j - 1]
        k = int(np.argmin(costs))
        best[j], cut[j] = costs[k], lo + k
    groups, j = [], n
    while j > 0:
        groups.append(order[cut[j]:j])
        j = int(cut[j])
    return groups[::-1]


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
