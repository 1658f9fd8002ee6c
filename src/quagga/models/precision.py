"""Which numeric precision a model runs in on this hardware: training and encoding follow one policy.

Kept apart from the training module so that encoding needs neither Lightning nor its import time.
"""

from __future__ import annotations

import torch


def resolve_precision(precision: str, accelerator: str) -> str:
    """Lightning precision for ``precision: auto``: bf16 mixed where the hardware computes in bf16.

    On such CPUs (AVX-512 BF16 or AMX, as oneDNN reports) and GPUs (Ampere on) the default model trains
    faster in bf16 at the same reconstruction quality (``bench/train_speed.py``); elsewhere bf16 would
    be emulated and slower, so fp32.
    """
    if precision != "auto":
        return precision
    if on_cpu(accelerator):
        try:
            native = torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a torch build without the query
            native = False
    else:
        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return "bf16-mixed" if native else "32-true"


def on_cpu(accelerator: str) -> bool:
    """Whether the ``accelerator`` setting trains on the CPU (``auto``: when there is no GPU)."""
    return accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
