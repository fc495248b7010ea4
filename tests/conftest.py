"""Settings for the whole suite: one torch thread per process (the tensors are tiny; more threads only add overhead,
and on a shared 2-core machine many times over), inherited by the worker processes the tests start, and no network."""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["DTM_THREADS"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch  # imported after OMP_NUM_THREADS is set, which torch reads when it loads

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory):
    """One TINY model pretrained on the increment task, shared by the trainer tests of every method."""
    from dtm.config.pretrain import PretrainConfig
    from dtm.training.pretrain import pretrain
    from tests.shared import TINY

    out = tmp_path_factory.mktemp("base")
    cfg = PretrainConfig(architecture=TINY, steps=300, batch_size=64, output_dir=str(out), num_examples=4000)
    pretrain(cfg, overwrite=True, progress=False)
    return out / "model"
