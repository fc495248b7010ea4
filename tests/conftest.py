"""Settings for the whole suite: one torch thread per process (the tensors are tiny; more threads only add overhead,
and on a shared 2-core machine many times over), inherited by the worker processes the tests start, and no network."""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["DTM_THREADS"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch

torch.set_num_threads(1)
