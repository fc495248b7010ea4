"""Kill test: a training process SIGKILLed at random moments, again and again, never loses its last checkpoint, and
resuming reaches exactly the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import torch
import yaml
from safetensors.torch import load_file

from dtm.models import TinyModelConfig, build_tiny_model, save_model
from dtm.training import checkpoint as ckpt

KILLS = 10
TOTAL_STEPS = 100  # long enough that ten kills cannot all come after the end
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def write_config(path, base, out) -> None:
    cfg = dict(
        base_model=str(base),
        output_dir=str(out),
        h=1.0,
        a_end=2.0,
        steps_per_h=50,
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


def train_command(config) -> list[str]:
    return [sys.executable, "-m", "dtm.cli", "train", "--config", str(config), "--resume", "--no-progress"]


def assert_checkpoint_loads(folder) -> int:
    for name in ("student", "teacher", "ema"):
        assert load_file(folder / f"{name}.safetensors")
    torch.load(folder / "optimizer.pt", weights_only=False)
    torch.load(folder / "state.pt", weights_only=False)
    return json.loads((folder / "trainer_state.json").read_text())["step"]


def final_weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(ckpt.latest_checkpoint(run_dir) / "student.safetensors")


def test_sigkill_at_random_moments_never_loses_work(tmp_path):
    torch.manual_seed(0)
    tiny = TinyModelConfig(vocab_size=14, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64)
    save_model(build_tiny_model(tiny), tmp_path / "base")
    for name in ("reference", "killed"):
        write_config(tmp_path / f"{name}.yaml", tmp_path / "base", tmp_path / name)

    subprocess.run(train_command(tmp_path / "reference.yaml"), env=ENV, check=True, capture_output=True)
    reference = final_weights(tmp_path / "reference")
    total_steps = json.loads((ckpt.latest_checkpoint(tmp_path / "reference") / "trainer_state.json").read_text())
    assert total_steps["step"] == TOTAL_STEPS

    rng = random.Random(0)
    run_dir = tmp_path / "killed"
    last_step = -1
    for _ in range(KILLS):
        proc = subprocess.Popen(
            train_command(tmp_path / "killed.yaml"), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        # Wait for the run to make progress past the last checkpoint, then kill it a random moment later, which
        # often lands inside the next checkpoint write (one is written every step).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            latest = ckpt.latest_checkpoint(run_dir)
            if latest is not None and int(latest.name.split("-")[1]) > last_step:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        latest = ckpt.latest_checkpoint(run_dir)
        assert latest is not None
        step = assert_checkpoint_loads(latest)
        assert step >= last_step
        last_step = step
    assert last_step < TOTAL_STEPS, "the kills came too late to interrupt training; the test proves nothing"

    subprocess.run(train_command(tmp_path / "killed.yaml"), env=ENV, check=True, capture_output=True)
    resumed = final_weights(run_dir)
    assert resumed.keys() == reference.keys()
    for name, value in reference.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=name)
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, TOTAL_STEPS + 1))  # the metrics log has each step once, with no torn lines
