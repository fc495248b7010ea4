"""Kill test: a training process SIGKILLed again and again, at moments that include every stage of a checkpoint
write, never loses its last checkpoint, and resuming reaches exactly the weights of an uninterrupted run.

The kills are counted, not timed (see tests/kill_worker.py): each run stops at the n-th time it reaches one moment
(after an optimizer step, mid-way through a metrics line, after a checkpoint's weight file, after its optimizer or
run state, before the complete checkpoint is renamed into place, while an old one is pruned), one run per moment, with
n drawn from a seeded generator. The test does the same thing on every machine, however loaded.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from dtm.models import save_model
from dtm.training import checkpoint as ckpt
from tests.shared import tiny_model

WORKER = Path(__file__).with_name("kill_worker.py")
MOMENTS = ("step", "log", "weights", "state", "synced", "prune")
KILLS = len(MOMENTS)
TOTAL_STEPS = 30  # each kill comes at most 5 steps after the run (re)starts, so all of them come before the end
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def write_config(path, base, out) -> None:
    cfg = dict(
        base_model=str(base),
        output_dir=str(out),
        h=1.0,
        a_end=2.0,
        steps_per_h=15,
        buffer_prompts=8,
        buffer_completions=2,
        refresh_every=3,
        refresh_prompts=4,
        prompt_pool=64,
        micro_batch=8,
        grad_accum=2,
        eval_prompts=0,
        save_every=1,
        keep_checkpoints=2,
        ema=0.5,
    )
    path.write_text(yaml.safe_dump(cfg))


def train_args(config) -> list[str]:
    return ["train", "--config", str(config), "--resume", "--no-progress"]


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600, **kwargs)


def assert_checkpoint_loads(folder) -> int:
    for name in ("student", "teacher", "ema"):
        assert load_file(folder / f"{name}.safetensors")
    torch.load(folder / "optimizer.pt", weights_only=False)
    torch.load(folder / "state.pt", weights_only=False)
    return json.loads((folder / "trainer_state.json").read_text())["step"]


def final_weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(ckpt.latest_checkpoint(run_dir) / "student.safetensors")


def test_sigkill_at_every_stage_of_a_checkpoint_never_loses_work(tmp_path):
    save_model(tiny_model(0), tmp_path / "base")
    for name in ("reference", "killed"):
        write_config(tmp_path / f"{name}.yaml", tmp_path / "base", tmp_path / name)

    done = run([sys.executable, "-m", "dtm.cli", *train_args(tmp_path / "reference.yaml")])
    assert done.returncode == 0, done.stderr[-3000:]
    reference = final_weights(tmp_path / "reference")
    total_steps = json.loads((ckpt.latest_checkpoint(tmp_path / "reference") / "trainer_state.json").read_text())
    assert total_steps["step"] == TOTAL_STEPS

    rng = random.Random(0)
    run_dir = tmp_path / "killed"
    last_step = -1
    for k in range(KILLS):
        moment, n = MOMENTS[k % len(MOMENTS)], rng.randint(1, 3)
        killed = run([sys.executable, str(WORKER), moment, str(n), *train_args(tmp_path / "killed.yaml")])
        assert killed.returncode == -signal.SIGKILL, f"kill {k} ({moment} #{n}) did not happen: {killed.stderr[-3000:]}"
        latest = ckpt.latest_checkpoint(run_dir)
        if latest is None:  # killed before the first checkpoint was complete
            assert last_step == -1
            continue
        step = assert_checkpoint_loads(latest)
        assert step >= last_step
        last_step = step
    assert 0 < last_step < TOTAL_STEPS

    done = run([sys.executable, "-m", "dtm.cli", *train_args(tmp_path / "killed.yaml")])
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = final_weights(run_dir)
    assert resumed.keys() == reference.keys()
    for name, value in reference.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=name)
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, TOTAL_STEPS + 1))  # the metrics log has each step once, with no torn lines
