"""Worker for tests/test_distributed.py: one rank of a multi-process DTM run (launched by torch.distributed.run), or a
single process when started directly.

Usage: python tests/distributed_worker.py CONFIG.yaml OUT_WEIGHTS_PREFIX [--resume] [--fixed-batches]

``--fixed-batches`` replaces buffer draws by micro-batches that depend only on (step, global micro-batch index), where
rank r's micro-batch i has global index r * grad_accum + i. A run over W processes with accumulation A then sees the
same data as one process with accumulation W * A, which makes the two comparable.
"""

from __future__ import annotations

import sys

import torch
from safetensors.torch import save_file

from dtm.config import load_config
from dtm.diffusion.masking import sar_masked_states
from dtm.models import TinyModelConfig, build_tiny_model
from dtm.training.dtm import DTMConfig, DTMTrainer, MicroBatch


class FixedBatchTrainer(DTMTrainer):
    micro_batches_drawn = 0  # an optimizer step draws grad_accum of them: the index within the step is this mod that

    def _micro_batch(self, h: float) -> MicroBatch:
        cfg = self.cfg
        index = self.micro_batches_drawn % cfg.grad_accum
        self.micro_batches_drawn += 1
        global_index = self.accelerator.process_index * cfg.grad_accum + index
        g = torch.Generator().manual_seed(10_000 * self.state.step + global_index)
        prompts = self.task.prompts(cfg.micro_batch, split="train", seed=10_000 * self.state.step + global_index)
        responses = self.task.demonstrations(prompts, g)
        log_tilt = h * torch.rand(cfg.micro_batch, generator=g)
        state = sar_masked_states(responses, cfg.sampling.block_length, self.mask_id, g)
        return MicroBatch(prompts.ids, prompts.attention_mask, responses, log_tilt, None, state)


if __name__ == "__main__":
    config, prefix = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    model = build_tiny_model(
        TinyModelConfig(vocab_size=14, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64)
    )
    trainer_cls = FixedBatchTrainer if "--fixed-batches" in sys.argv else DTMTrainer
    trainer = trainer_cls(load_config(DTMConfig, config), model=model, resume="--resume" in sys.argv, progress=False)
    trainer.train()
    rank = trainer.accelerator.process_index
    weights = {k: v.contiguous() for k, v in trainer.raw_student.state_dict().items()}
    save_file(weights, f"{prefix}-rank{rank}.safetensors")
    with open(f"{prefix}-rank{rank}.prompts", "w") as f:
        f.write("\n".join(str(tuple(row)) for row in trainer.buffer.pool.ids.tolist()))
