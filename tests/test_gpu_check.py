"""scripts/gpu_check.py at its CPU shape (``--tiny``): every training set-up and every sampler option runs, and the
memory plan it reports is the plan of the model and batch it trained."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from pathlib import Path

import pytest

from dtm.memory_plan import ModelShape, StepShape, memory_plan

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("bitsandbytes", reason="the optional extras (requirements-optional.txt) are not installed")


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_gpu_check_runs_every_part_and_reports_the_plan(tmp_path, capsys):
    script = load_script()
    result = script.main(["--tiny", "--out", str(tmp_path / "check.json")])
    assert json.loads((tmp_path / "check.json").read_text()) == json.loads(json.dumps(result))
    assert result["device"] == "cpu" and [row["check"] for row in result["training"]] == [c.name for c in script.CHECKS]
    model, settings = result["model"], result["settings"]
    shape = ModelShape(model["vocab_size"], model["hidden_size"], model["intermediate_size"], model["num_layers"],
                       model["num_heads"], model["num_heads"])  # fmt: skip
    for row, check in zip(result["training"], script.CHECKS, strict=True):
        lengths = row["prompt_length"], settings["gen_length"], settings["block_length"]
        step = StepShape(settings["micro_batch"], *lengths)
        plan = memory_plan(shape, step, lora_r=settings["lora_r"], four_bit=check.four_bit,
                           checkpointing=check.checkpointing)  # fmt: skip
        assert row["plan"] == plan and row["peak_gb"] is None and row["seconds_per_step"] > 0
    options = {(row["remasking"], row["threshold"], row["cache"]) for row in result["decoding"]}
    assert options == set(itertools.product(("low_confidence", "random"), (None, 0.9), script.CACHES))
    assert all(row["tokens_per_s"] > 0 and 0 < row["passes_per_token"] <= 1 for row in result["decoding"])
    assert "| LoRA on a 4-bit NF4 base, checkpointing |" in capsys.readouterr().out


def test_block_length_must_divide_the_response(tmp_path):
    with pytest.raises(SystemExit):
        load_script().parse_args(["--gen-length", "100", "--block-length", "32", "--out", str(tmp_path / "x")])
