"""The ``dtm`` command of tests/test_docs_commands.py's sandbox: the real CLI with every run shrunk to a few steps.

Each documented command (and each ``dtm`` call inside the scripts it runs) keeps its own arguments; the overrides
below are appended, so they win over the command's and only the size changes: steps, batch sizes, prompts, seeds.
Output folders are overwritten (``OVERWRITE``). Every call is appended to the file named by ``DTM_DOCS_LOG`` (one JSON
argv per line)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from dtm.cli import main as dtm_main

PRETRAIN = ["steps=2", "batch_size=4", "num_examples=32", "log_every=1"]
# A DTM run's size: every command that trains DTM (train, and the studies' DTM sections) gets these keys.
DTM_SIZE = {
    "steps_per_h": 2,
    "buffer_prompts": 2,
    "buffer_completions": 2,
    "refresh_every": 1,
    "refresh_prompts": 1,
    "micro_batch": 4,
    "grad_accum": 1,
}
DTM_RUN = [*(f"{k}={v}" for k, v in DTM_SIZE.items()), "eval_prompts=2"]
BASELINE_RUN = ["rollout_batches=2", "micro_batch=4", "grad_accum=1", "eval_prompts=2", "num_generations=2"]
SFT = ["steps=1", "batch_size=2", "examples_per_task=4"]
EVAL = ["num_examples=2", "decode_batch=2"]
# Text tasks decode short responses in few rounds (the real checkpoint is slow on CPU).
TEXT_TASKS = ("countdown", "gsm8k", "math500", "sudoku")
TEXT_EVAL = ["gen_lengths=[16]", "block_length=16", "decode_steps=4"]
TEXT_RUN = ["sampling.gen_length=16", "sampling.block_length=16", "sampling.decode_steps=4"]
MAZE_STUDY = [
    "seeds=[0]",
    "workers=1",
    "pretrain_steps=2",
    "total_steps=4",
    "buffer_prompts=4",
    "buffer_completions=2",
    "micro_batch=4",
    "dtm.grad_accum=1",
    "eval_mazes=2",
    "samples_per_maze=2",
    "tv_mazes=1",
]
FIT_STUDY = ["seeds=[0]", "workers=1", "train_mazes=1", "heldout_mazes=1", "invalid_samples=1", "pretrain.steps=2"]
COMPARE_STUDY = [
    "seeds=[0]",
    "workers=1",
    "shared.micro_batch=4",
    "curve_points=1",
    "curve_prompts=2",
    "eval_prompts=2",
    "eval_samples=2",
]
DECODING_STUDY = ["seeds=[0]", "workers=1", "eval_prompts=2", "tv_mazes=1"]
# Commands whose output folder a later documented command may write again (as a reader who reruns would, with
# --overwrite); --resume runs keep theirs.
OVERWRITE = ("pretrain", "convert", "sft", "train", "eval", "study", "export")


def _config(argv: list[str]) -> dict[str, Any]:
    """The YAML behind ``--config`` (empty without one), with the command's own ``key=value`` overrides of top-level
    keys laid over it."""
    values: dict[str, Any] = {}
    if "--config" in argv:
        values = yaml.safe_load(Path(argv[argv.index("--config") + 1]).read_text()) or {}
    for arg in argv:
        if "=" in arg and not arg.startswith("-") and "." not in arg.split("=", 1)[0]:
            key, value = arg.split("=", 1)
            values[key] = yaml.safe_load(value)
    return values


def _shrunk_variants(argv: list[str]) -> list[str]:
    """``argv`` with its fit config replaced by a copy whose variants use the shrunk DTM keys they set themselves
    (variant names may hold spaces and brackets, which a ``key=value`` override cannot name)."""
    if "--config" not in argv:
        return argv
    i = argv.index("--config")
    values = yaml.safe_load(Path(argv[i + 1]).read_text()) or {}
    for variant in (values.get("variants") or {}).values():
        variant.update({k: v for k, v in DTM_SIZE.items() if k in variant})
    shrunk = Path(".docs-shim") / Path(argv[i + 1]).name
    shrunk.parent.mkdir(exist_ok=True)
    shrunk.write_text(yaml.safe_dump(values))
    return [*argv[: i + 1], str(shrunk), *argv[i + 2 :]]


def shrink(argv: list[str]) -> list[str]:
    """The overrides that make ``argv`` (a dtm command line, without ``dtm``) a few-step run."""
    command = argv[0] if argv else ""
    if command == "pretrain":
        return PRETRAIN
    if command == "sft":
        return SFT
    if command == "eval":
        task = argv[argv.index("--task") + 1] if "--task" in argv else _config(argv).get("task")
        return [*EVAL, *(TEXT_EVAL if task in TEXT_TASKS else [])]
    if command == "sample":
        return ["n=2"]
    if command == "demo":
        return ["quick=true"]
    if command == "train":
        cfg = _config(argv)
        text = TEXT_RUN if cfg.get("task") in TEXT_TASKS else []
        return [*(DTM_RUN if cfg.get("method", "dtm") == "dtm" else BASELINE_RUN), *text]
    if command == "study" and len(argv) > 1:
        if argv[1] == "maze":
            return MAZE_STUDY
        if argv[1] == "fit":
            return [*FIT_STUDY, *(f"dtm.{k}={v}" for k, v in DTM_SIZE.items())]
        if argv[1] == "compare":
            cfg = _config(argv)
            trains_dtm = "dtm" in (cfg.get("methods") or [])
            dtm = [f"method_options.dtm.{k}={v}" for k, v in DTM_SIZE.items()] if trains_dtm else []
            rollouts = ["rollouts=8"] if cfg.get("rollouts") else []
            pretrain = ["pretrain.steps=2"] if cfg.get("pretrain") else []
            return [*COMPARE_STUDY, *dtm, *rollouts, *pretrain]
        if argv[1] == "decoding":
            return DECODING_STUDY
    return []


def main() -> None:
    argv = sys.argv[1:]
    if "--help" not in argv and "-h" not in argv:
        if argv[:2] == ["study", "fit"]:
            argv = _shrunk_variants(argv)
        argv = [*argv, *shrink(argv)]
        if argv[0] in OVERWRITE and "--resume" not in argv and "--overwrite" not in argv:
            argv.append("--overwrite")
    if os.environ.get("DTM_DOCS_LOG"):
        with open(os.environ["DTM_DOCS_LOG"], "a") as log:
            log.write(json.dumps(argv) + "\n")
    dtm_main(argv)


if __name__ == "__main__":
    main()
