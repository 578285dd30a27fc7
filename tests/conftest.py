"""Shared test settings: deterministic torch on few threads (CI has two cores)."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the API and agent suites do not need torch
    pass
