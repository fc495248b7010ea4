"""Worker for tests/test_distributed.py: one rank of a multi-process DTM run (launched by torch.distributed.run).

Usage: python tests/distributed_worker.py CONFIG.yaml OUT_WEIGHTS_PREFIX [--resume]
"""

from __future__ import annotations

import sys

from safetensors.torch import save_file

from dtm.config import load_config
from dtm.models import TinyModelConfig, build_tiny_model
from dtm.training.dtm import DTMConfig, DTMTrainer

if __name__ == "__main__":
    import torch

    config, prefix = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    model = build_tiny_model(
        TinyModelConfig(vocab_size=14, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64)
    )
    trainer = DTMTrainer(load_config(DTMConfig, config), model=model, resume="--resume" in sys.argv, progress=False)
    trainer.train()
    rank = trainer.accelerator.process_index
    weights = {k: v.contiguous() for k, v in trainer.raw_student.state_dict().items()}
    save_file(weights, f"{prefix}-rank{rank}.safetensors")
    with open(f"{prefix}-rank{rank}.prompts", "w") as f:
        f.write("\n".join(str(tuple(row)) for row in trainer.buffer.pool.ids.tolist()))
