"""Two CPU processes (gloo, loopback) train one DTM run through accelerate: ranks agree, shards are disjoint, a
checkpoint written by the 2-process run resumes exactly in a 2-process run, and, given the same micro-batches, the run
equals one process with twice the gradient accumulation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("distributed_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def run(command: list[str]) -> None:
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def launch(config: Path, prefix: Path, *extra: str) -> None:
    """Two ranks of the worker under torch.distributed.run. ``--standalone`` lets the rendezvous store bind a free
    port itself: a port picked here and released before the launch could be taken by another process meanwhile."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    run([*launcher, str(WORKER), str(config), str(prefix), *extra])


def write_config(path: Path, out: Path, **changes: object) -> None:
    cfg = dict(
        base_model="unused",
        output_dir=str(out),
        h=1.0,
        a_end=2.0,
        steps_per_h=3,
        buffer_prompts=4,
        buffer_completions=2,
        refresh_every=2,
        refresh_prompts=2,
        prompt_pool=32,
        micro_batch=4,
        grad_accum=2,
        eval_prompts=0,
        save_every=1,
        keep_checkpoints=0,
    )
    path.write_text(yaml.safe_dump(cfg | changes))


def test_two_process_training_agrees_across_ranks_and_resumes(tmp_path):
    write_config(tmp_path / "full.yaml", tmp_path / "full")
    launch(tmp_path / "full.yaml", tmp_path / "full")
    rank0, rank1 = (load_file(tmp_path / f"full-rank{r}.safetensors") for r in (0, 1))
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0, msg=name)
    # Each rank draws prompts from its own shard of the pool: no prompt is shared.
    shards = [set((tmp_path / f"full-rank{r}.prompts").read_text().splitlines()) for r in (0, 1)]
    assert shards[0] and shards[1] and not shards[0] & shards[1]
    # Only rank 0 writes; each checkpoint holds both ranks' states.
    state = torch.load(tmp_path / "full" / "step-00000003" / "state.pt", weights_only=False)
    assert len(state["ranks"]) == 2
    assert not torch.equal(state["ranks"][0]["buffer"]["responses"], state["ranks"][1]["buffer"]["responses"])

    # Resume the 2-process run from its step-2 checkpoint (mid-phase) in a new 2-process run.
    write_config(tmp_path / "resumed.yaml", tmp_path / "resumed")
    (tmp_path / "resumed").mkdir()
    shutil.copytree(tmp_path / "full" / "step-00000002", tmp_path / "resumed" / "step-00000002")
    launch(tmp_path / "resumed.yaml", tmp_path / "resumed", "--resume")
    resumed = load_file(tmp_path / "resumed-rank0.safetensors")
    for name in rank0:
        torch.testing.assert_close(resumed[name], rank0[name], rtol=0, atol=0, msg=name)


def test_two_processes_equal_one_process_with_twice_the_accumulation(tmp_path):
    """Same micro-batches (see the worker's --fixed-batches): DDP's gradient average over 2 ranks x 2 micro-batches
    equals one process accumulating 4. Only the float summation order differs, so weights agree to 1e-5 after 6 steps
    (2 phases) of AdamW."""
    write_config(tmp_path / "two.yaml", tmp_path / "two")
    launch(tmp_path / "two.yaml", tmp_path / "two", "--fixed-batches")
    write_config(tmp_path / "one.yaml", tmp_path / "one", grad_accum=4)
    run([sys.executable, str(WORKER), str(tmp_path / "one.yaml"), str(tmp_path / "one"), "--fixed-batches"])
    two, one = load_file(tmp_path / "two-rank0.safetensors"), load_file(tmp_path / "one-rank0.safetensors")
    start = load_file(tmp_path / "two" / "step-00000001" / "student.safetensors")
    moved = 0.0
    for name in two:
        torch.testing.assert_close(one[name], two[name], rtol=0, atol=1e-5, msg=name)
        moved = max(moved, (two[name] - start[name]).abs().max().item())
    assert moved > 1e-3  # training changed the weights: the comparison is not vacuous
