"""SAR sampler: ours (``dtm.diffusion.sampler.generate``) vs a straightforward reference, greedy, same model.

- ours: logits (output projection) only for the current block's positions, confidence as logit - logsumexp on the
  block, one batched ``topk`` per round;
- reference (LLaDA's published sampler, written plainly): logits for every position, a full-vocabulary float64
  softmax over all response positions each round, and a Python loop over rows to choose the positions to commit.

Both decode the same prompts with the same model; the benchmark asserts that their outputs are identical, then reports
median times over alternating repetitions and the ratio reference / ours. The gain comes from the output head and the
softmax, so it grows with the vocabulary relative to the backbone (``--vocab``; at a 32-token vocabulary the two are
within noise).

    .venv/bin/python benchmarks/sampler.py     # batch 16, prompt 32, gen length 256, block 32, 128 steps, vocab 1024
"""

from __future__ import annotations

import torch
from common import (
    decoding_model,
    decoding_parser,
    median,
    peak_rss_mb,
    report_times,
    summary_line,
    time_alternating,
)

from dtm.diffusion.sampler import generate
from dtm.models import DiffusionLM


@torch.no_grad()
def reference_generate(
    model: DiffusionLM, prompt: torch.Tensor, gen_length: int, block_length: int, steps: int, mask_id: int
) -> torch.Tensor:
    """Greedy low-confidence SAR decoding as in LLaDA's reference code (full logits, per-row selection loop)."""
    batch, prompt_len = prompt.shape
    x = torch.full((batch, prompt_len + gen_length), mask_id, dtype=torch.long)
    x[:, :prompt_len] = prompt
    num_blocks = gen_length // block_length
    assert steps % num_blocks == 0, "the reference needs the same number of steps in every block"
    block_steps = steps // num_blocks
    for block in range(num_blocks):
        end = prompt_len + (block + 1) * block_length
        masked_in_block = (x[:, end - block_length : end] == mask_id).sum(dim=1)
        base, extra = masked_in_block // block_steps, masked_in_block % block_steps
        for step in range(block_steps):
            mask_index = x == mask_id
            logits = model(x)  # [B, L, V]: every position
            logits[..., mask_id] = float("-inf")  # the mask token is never proposed
            proposal = logits.argmax(dim=-1)
            probs = logits[:, prompt_len:].double().softmax(dim=-1)  # every response position, full vocabulary
            confidence = torch.full(x.shape, float("-inf"), dtype=torch.float64)
            confidence[:, prompt_len:] = probs.gather(-1, proposal[:, prompt_len:, None]).squeeze(-1)
            confidence[:, end:] = float("-inf")  # later blocks wait
            confidence = torch.where(mask_index, confidence, float("-inf"))
            commit = torch.zeros_like(mask_index)
            for row in range(batch):
                count = int(base[row] + (step < extra[row]))
                commit[row, confidence[row].topk(count).indices] = True
            x[commit] = proposal[commit]
    return x


def main() -> None:
    args = decoding_parser(__doc__, prompt=32).parse_args()
    torch.set_num_threads(args.threads)
    mask_id = 1
    model = decoding_model(args, mask_id)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(2, args.vocab, (args.batch, args.prompt), generator=g)  # no mask token in the prompt

    variants = {
        "ours": lambda: generate(model, prompt, args.gen, args.block, args.steps, mask_token_id=mask_id),
        "reference": lambda: reference_generate(model, prompt, args.gen, args.block, args.steps, mask_id),
    }
    times, results = time_alternating(variants, args.repeats, warmup=0)
    identical = torch.equal(results["ours"], results["reference"])
    response = results["ours"][:, args.prompt :]
    ratio = median(times["reference"]) / median(times["ours"])
    print(
        f"SAR sampler (greedy, low_confidence): batch {args.batch}, prompt {args.prompt}, gen length {args.gen}, "
        f"block {args.block}, steps {args.steps}; model vocab {args.vocab}, hidden {args.hidden}, "
        f"{args.layers} layers; {args.threads} threads"
    )
    report_times(times)
    print(f"  identical greedy outputs: {identical} ({int(response.unique().numel())} distinct tokens generated)")
    print(f"  time ratio reference / ours: {ratio:.2f}x   (peak RSS of this process {peak_rss_mb():.0f} MiB)")
    assert identical, "our sampler and the reference disagree"
    summary_line("SAR sampler: reference / ours", ratio, ">= 1.5x")


if __name__ == "__main__":
    main()
