"""Approximate prefix caching in SAR decoding: speed-up over the uncached sampler and agreement of greedy outputs.

Both runs use ``dtm.diffusion.sampler.generate`` on the same left-padded prompts and model; the cached run passes
``cache="prefix"``: per block, one full pass fills a key/value cache for the prompt and finished blocks, and the
block's later rounds run only the block and the positions after it. Prefix keys/values go stale within a block
(attention is bidirectional), so outputs may differ: the benchmark reports the fraction of response tokens, of first
blocks and of whole responses that equal the uncached ones. The model has random weights drawn with std ``--init-std``:
0.2 gives context-dependent, chaotic outputs (a pessimistic case), 0.1 nearly context-free ones (an optimistic case);
agreement on a trained model, and its effect on task accuracy, is a separate measurement.

    .venv/bin/python benchmarks/prefix_cache.py   # batch 16, prompt <= 64, gen length 256, block 32, 128 steps
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


def main() -> None:
    args = decoding_parser(__doc__, prompt=64).parse_args()
    torch.set_num_threads(args.threads)
    mask_id = 1
    model = decoding_model(args, mask_id)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(2, args.vocab, (args.batch, args.prompt), generator=g)
    lengths = torch.randint(args.prompt // 2, args.prompt + 1, (args.batch,), generator=g)
    attention_mask = (torch.arange(args.prompt)[None, :] >= args.prompt - lengths[:, None]).long()

    def decode(prefix_cache: bool) -> torch.Tensor:
        out = generate(
            model,
            prompt,
            args.gen,
            args.block,
            args.steps,
            mask_token_id=mask_id,
            attention_mask=attention_mask,
            cache="prefix" if prefix_cache else "none",
        )
        return out[:, args.prompt :]

    times, results = time_alternating(
        {"no cache": lambda: decode(False), "prefix cache": lambda: decode(True)}, args.repeats, warmup=0
    )
    plain, cached = results["no cache"], results["prefix cache"]
    ratio = median(times["no cache"]) / median(times["prefix cache"])
    token_agreement = (plain == cached).float().mean().item()
    first_block = (plain[:, : args.block] == cached[:, : args.block]).all(dim=1).float().mean().item()
    whole = (plain == cached).all(dim=1).float().mean().item()
    print(
        f"Prefix cache (greedy, low_confidence): batch {args.batch}, prompt {args.prompt // 2}-{args.prompt} "
        f"(left-padded), gen length {args.gen}, block {args.block}, steps {args.steps}; model vocab {args.vocab}, "
        f"hidden {args.hidden}, {args.layers} layers, init std {args.init_std}; {args.threads} threads"
    )
    report_times(times)
    print(
        f"  agreement with the uncached sampler: tokens {token_agreement:.1%}, first blocks {first_block:.1%}, "
        f"whole responses {whole:.1%}"
    )
    print(f"  speed-up no cache / prefix cache: {ratio:.2f}x   (peak RSS of this process {peak_rss_mb():.0f} MiB)")
    assert not (cached == mask_id).any(), "the cached sampler left mask tokens in a response"
    summary_line(f"prefix cache: no cache / cache (token agreement {token_agreement:.1%})", ratio, "report")


if __name__ == "__main__":
    main()
