"""Cost of the reward time limit: scoring a batch through ``RewardScorer`` (a worker process, a hard limit per call)
vs calling the same reward function in the training process, next to the rollout that produced the batch.

The worker costs a round trip per batch (pickling the responses and metadata, a socket write each way); its fork
happens once, before timing, and again only after a time-out (measured separately, as the cost of one restart).

    .venv/bin/python benchmarks/reward_limit.py     # Sudoku digits task, batch 64, gen length 256, block 32
"""

from __future__ import annotations

import argparse
import time

import torch
from common import median, report_times, summary_line, time_alternating

from dtm.diffusion.sampler import generate
from dtm.models import TinyModelConfig, build_tiny_model
from dtm.tasks.sudoku import VOCAB_SIZE, SudokuTask
from dtm.training.rewards import RewardScorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--gen", type=int, default=256)
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = SudokuTask(gen_length=args.gen)
    prompts = task.prompts(args.batch, split="train", seed=0)
    torch.manual_seed(0)
    model_cfg = TinyModelConfig(vocab_size=VOCAB_SIZE, mask_token_id=task.mask_token_id, hidden_size=64, num_layers=2)
    model = build_tiny_model(model_cfg).eval()
    start = time.perf_counter()
    with torch.no_grad():
        sequences = generate(model, prompts.ids, args.gen, args.block, args.gen // 2, mask_token_id=task.mask_token_id)
    rollout_s = time.perf_counter() - start
    responses = sequences[:, prompts.ids.shape[1] :]

    scorer = RewardScorer([task.reward], timeout=60.0)
    scorer(responses, prompts.meta)  # forks the worker
    variants = {
        "in process": lambda: task.reward(responses, prompts.meta),
        "worker": lambda: scorer(responses, prompts.meta).rewards,
    }
    times, results = time_alternating(variants, args.repeats, warmup=5)
    assert torch.equal(results["in process"].float(), results["worker"]), "the worker scored differently"
    restarts = []
    for _ in range(5):
        scorer.close()
        start = time.perf_counter()
        scorer(responses, prompts.meta)
        restarts.append(time.perf_counter() - start)
    scorer.close()

    overhead = median(times["worker"]) - median(times["in process"])
    print(
        f"Reward time limit: {task.name} reward, batch {args.batch}, gen length {args.gen}; rollout of the built-in "
        f"model (hidden 64, 2 layers, {args.gen // 2} steps) {rollout_s:.2f} s; {args.threads} threads"
    )
    report_times(times, unit="ms")
    print(f"  overhead per reward call: {overhead * 1e3:.3f} ms ({100 * overhead / rollout_s:.4f}% of the rollout)")
    print(f"  first call after a time-out (fork + call): median {median(restarts) * 1e3:.1f} ms")
    summary_line(
        "reward time limit: worker / in process, per call",
        median(times["worker"]) / median(times["in process"]),
        "report",
    )


if __name__ == "__main__":
    main()
