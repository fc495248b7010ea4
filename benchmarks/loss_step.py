"""c-DTM loss step: ours (logits only at loss positions, no dense target) vs the dense reference formulation.

Both variants start from the same backbone hidden states [B, P + G, H] and output head, and run forward + backward:
- ours: select the active-block loss positions, project them to logits, ``cdtm_loss``;
- reference: project every response position to logits (student and teacher), build the dense target
  c * softmax(teacher) + onehot * (exp(h r) - c) as a [B, G, V] tensor, sum target * log_softmax over loss positions.
Each variant runs in its own process; peak memory is the growth of its max RSS over the inputs' footprint, and time
is the best of ``--repeats`` runs.

    .venv/bin/python benchmarks/loss_step.py            # vocab 32768, gen length 256, block 32
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import torch
from common import summary_line

from dtm.diffusion.losses import cdtm_loss, position_weights
from dtm.diffusion.masking import sar_masked_states


def make_inputs(args: argparse.Namespace) -> dict:
    g = torch.Generator().manual_seed(0)
    length = args.prompt + args.gen
    response = torch.randint(args.vocab, (args.batch, args.gen), generator=g)
    state = sar_masked_states(response, args.block, mask_token_id=0, generator=g)
    return {
        "hidden": torch.randn(args.batch, length, args.hidden, generator=g),
        "teacher_hidden": torch.randn(args.batch, length, args.hidden, generator=g),
        "head": torch.randn(args.vocab, args.hidden, generator=g) / args.hidden**0.5,
        "response": response,
        "loss_mask": state.loss_mask,
        "rewards": torch.rand(args.batch, generator=g),
    }


def ours(inp: dict, args: argparse.Namespace) -> torch.Tensor:
    hidden = inp["hidden"].requires_grad_(True)
    head = inp["head"].requires_grad_(True)
    select = torch.cat([torch.zeros(args.batch, args.prompt, dtype=torch.bool), inp["loss_mask"]], dim=1)
    student_logits = hidden[select] @ head.T
    with torch.no_grad():
        teacher_logits = inp["teacher_hidden"][select] @ head.T
    targets = inp["response"][inp["loss_mask"]]
    log_tilt = (args.h * inp["rewards"])[:, None].expand_as(inp["loss_mask"])[inp["loss_mask"]]
    loss = cdtm_loss(student_logits, teacher_logits, targets, log_tilt, position_weights(inp["loss_mask"]), args.c)
    loss.backward()
    return loss.detach()


def dense_reference(inp: dict, args: argparse.Namespace) -> torch.Tensor:
    hidden = inp["hidden"].requires_grad_(True)
    head = inp["head"].requires_grad_(True)
    student_logits = hidden[:, args.prompt :] @ head.T  # [B, G, V]
    with torch.no_grad():
        teacher_probs = (inp["teacher_hidden"][:, args.prompt :] @ head.T).softmax(dim=-1)
    onehot = torch.nn.functional.one_hot(inp["response"], args.vocab).float()
    w = torch.exp(args.h * inp["rewards"])[:, None, None]
    target = args.c * teacher_probs + onehot * (w - args.c)
    per_position = -(target * student_logits.log_softmax(dim=-1)).sum(dim=-1)
    mask = inp["loss_mask"].float()
    loss = ((per_position * mask).sum(dim=1) / mask.sum(dim=1)).mean()
    loss.backward()
    return loss.detach()


def run(name: str, args: argparse.Namespace, queue: mp.Queue) -> None:
    torch.set_num_threads(args.threads)
    fn = {"ours": ours, "dense": dense_reference}[name]
    inp = make_inputs(args)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(args.repeats):
        inp["hidden"].grad = inp["head"].grad = None
        start = time.perf_counter()
        loss = fn(inp, args)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"loss": loss.item(), "time": min(times), "peak_mb": (peak - baseline) / 1024})


def measure(name: str, args: argparse.Namespace) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=run, args=(name, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--gen", type=int, default=256)
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--h", type=float, default=1.0)
    parser.add_argument("--c", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    result = {name: measure(name, args) for name in ("ours", "dense")}
    print(f"c-DTM loss step, vocab {args.vocab}, batch {args.batch}, gen length {args.gen}, block {args.block}")
    for name, r in result.items():
        print(f"  {name:6s} loss {r['loss']:.6f}  time {r['time'] * 1e3:8.1f} ms  peak {r['peak_mb']:8.1f} MB")
    ours_r, dense_r = result["ours"], result["dense"]
    same = abs(ours_r["loss"] - dense_r["loss"]) <= 1e-4 * max(1.0, abs(dense_r["loss"]))
    print(f"  identical loss: {same}")
    print(f"  time ratio dense / ours:   {dense_r['time'] / ours_r['time']:.1f}x")
    print(f"  memory ratio dense / ours: {dense_r['peak_mb'] / max(ours_r['peak_mb'], 1e-3):.1f}x")
    assert same, "the dense reference and our loss disagree"
    summary_line("c-DTM loss step: dense / ours, time", dense_r["time"] / ours_r["time"], "report")
    summary_line(
        "c-DTM loss step: dense / ours, peak memory", dense_r["peak_mb"] / max(ours_r["peak_mb"], 1e-3), "report"
    )


if __name__ == "__main__":
    main()
