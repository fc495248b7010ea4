"""A user's mistakes end in one clear line naming the problem (exit status 2), never in a traceback, and before any
model is loaded. Each case here is one a new user ran into."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dtm.cli import main
from dtm.models import load_model
from tests.shared import read_metrics


@pytest.fixture(autouse=True)
def _no_traceback(monkeypatch):
    monkeypatch.delenv("DTM_TRACEBACK", raising=False)


def error_of(argv: list[str], capsys) -> str:
    """The error line of a command that must exit with status 2."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]  # after any progress bar of the command
    assert line.startswith(f"dtm {argv[0]}: error:")
    return line


def test_eval_block_length_zero_is_refused(tmp_path, capsys):
    err = error_of(
        ["eval", "--model", str(tmp_path), "--task", "increment", "--gen-lengths", "8", "--block-length", "0"], capsys
    )
    assert "block_length: must be positive, got 0" in err


def test_config_that_is_a_folder_is_refused(tmp_path, capsys):
    err = error_of(["train", "--config", str(tmp_path)], capsys)
    assert f"--config {tmp_path}: is a folder" in err


def test_zero_threads_is_refused(tmp_path, capsys):
    err = error_of(["eval", "--model", str(tmp_path), "--threads", "0"], capsys)
    assert "--threads: must be >= 1, got 0" in err


def test_negative_keep_checkpoints_is_refused(tmp_path, capsys):
    err = error_of(["train", f"base_model={tmp_path}", "keep_checkpoints=-1"], capsys)
    assert "keep_checkpoints: must be >= 0 (0 = keep every checkpoint), got -1" in err


def test_demo_takes_key_value_overrides_like_every_command(tmp_path, capsys):
    err = error_of(["demo", f"output_dir={tmp_path}", "sede=1"], capsys)
    assert "sede" in err and "did you mean 'seed'" in err


def test_a_base_model_is_refused_for_another_task(base_model_dir, tmp_path, capsys):
    """``dtm pretrain`` records its task in the model folder; training, sampling or evaluating it on another task
    names both tasks."""
    assert load_model(base_model_dir).model.config.dtm_task == {"task": "increment", "task_options": {}}
    out = tmp_path / "run"
    err = error_of(["train", f"base_model={base_model_dir}", "task=sudoku_digits", f"output_dir={out}"], capsys)
    assert "pretrained on task increment" in err and "task is sudoku_digits" in err
    assert not out.exists()
    err = error_of(["sample", "--model", str(base_model_dir), "--task", "maze"], capsys)
    assert "pretrained on task increment" in err and "task is maze" in err
    err = error_of(["eval", "--model", str(base_model_dir), "--task", "sudoku_digits"], capsys)
    assert "pretrained on task increment" in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["task_options.sise=3"], "task_options.sise: unknown key; did you mean 'size'?"),
        (["task_options.size=three"], "task_options.size: expected int, got str 'three'"),
        (["task_options.size=1"], "task_options (maze): size must be >= 2, got 1"),
        (["task_options.size=3"], "extra_openings must be in [0, 4] for size 3, got 5"),
    ],
)
def test_task_options_are_checked_like_config_keys(tmp_path, capsys, options, message):
    out = tmp_path / "run"
    err = error_of(["pretrain", "task=maze", *options, f"output_dir={out}"], capsys)
    assert message in err
    assert not out.exists()


def test_train_task_options_are_checked_before_the_model_loads(base_model_dir, tmp_path, capsys):
    err = error_of(
        ["train", f"base_model={base_model_dir}", "task_options.num_digit=3", f"output_dir={tmp_path / 'r'}"], capsys
    )
    assert "task_options.num_digit: unknown key; did you mean 'num_digits'?" in err


def test_sample_takes_the_task_options_the_model_was_pretrained_with(tmp_path, capsys):
    """A maze model samples without repeating its size: the folder records its task options."""
    out = tmp_path / "maze"
    main(
        [
            "pretrain",
            "task=maze",
            "task_options.size=3",
            "task_options.extra_openings=3",
            "steps=2",
            "architecture.hidden_size=16",
            "architecture.intermediate_size=32",
            "num_examples=64",
            f"output_dir={out}",
            "--no-progress",
        ]
    )
    capsys.readouterr()
    main(["sample", "--model", str(out / "model"), "--task", "maze", "--n", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("mean reward")


TINY_DTM = [
    "a_end=1",
    "h=1",
    "steps_per_h=2",
    "buffer_prompts=8",
    "prompt_pool=16",
    "refresh_prompts=0",
    "micro_batch=8",
    "eval_prompts=4",
    "seed=0",
    "--no-progress",
]


def final_evals(run) -> list[dict]:
    return [r for r in read_metrics(run) if r.get("eval") == "final"]


def test_resuming_runs_copied_finished_and_missing(base_model_dir, tmp_path, capsys, caplog):
    """A copy of a run folder resumes in place (its config names the original folder); resuming a finished run
    keeps one final evaluation; ``--resume`` on a folder with no checkpoint says it starts a new run."""
    run = tmp_path / "run"
    main(["train", f"base_model={base_model_dir}", f"output_dir={run}", *TINY_DTM])
    main(["train", "--config", str(run / "config.yaml"), "--resume", "--no-progress"])
    assert len(final_evals(run)) == 1

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    before = (run / "metrics.jsonl").read_text()
    main(["train", "--config", str(copy / "config.yaml"), f"output_dir={copy}", "--resume", "--no-progress"])
    assert (run / "metrics.jsonl").read_text() == before and len(final_evals(copy)) == 1

    fresh = tmp_path / "fresh"
    with caplog.at_level("WARNING", logger="dtm.training.trainer"):
        main(["train", f"base_model={base_model_dir}", f"output_dir={fresh}", "--resume", *TINY_DTM])
    assert f"--resume: {fresh} holds no checkpoint to resume from; starting a new run" in caplog.text


def test_every_checkpoint_damaged_ends_in_a_clear_error(base_model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", f"base_model={base_model_dir}", f"output_dir={run}", *TINY_DTM])
    for optimizer in run.glob("step-*/optimizer.pt"):
        optimizer.write_bytes(optimizer.read_bytes()[:10])
    err = error_of(["train", "--config", str(run / "config.yaml"), "--resume", "--no-progress"], capsys)
    assert f"every checkpoint in {run} is damaged" in err and "--overwrite" in err


def test_the_missing_kernels_warning_of_bitsandbytes_is_not_printed():
    """bitsandbytes' note that an optional faster 4-bit CPU kernel is missing (logged on import on AVX512-BF16 CPUs)
    is dropped; its other warnings are kept."""
    import logging

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    noise = logger.makeRecord(
        logger.name,
        logging.WARNING,
        __file__,
        0,
        "Failed to load CPU gemm_4bit_forward from "
        "kernels-community: %s. Please make sure you already `pip install kernels`",
        ("x",),
        None,
    )
    other = logger.makeRecord(logger.name, logging.WARNING, __file__, 0, "something else", (), None)
    assert not logger.filter(noise) and logger.filter(other)


# Errors that need no model are found before torch is imported (importing it takes seconds): each runs in a fresh
# interpreter, which reports the exit status and whether torch was loaded.
NO_MODEL_ERRORS = {
    "study maze key": ["study", "maze", "--config", "configs/maze-study.yaml", "bogus=1"],
    "study maze value": ["study", "maze", "--config", "configs/maze-study.yaml", "seeds=[]"],
    "study fit key": ["study", "fit", "--config", "configs/fit-maze.yaml", "bogus=1"],
    "study compare key": ["study", "compare", "--config", "configs/compare-maze.yaml", "methods=[ppo]"],
    "study decoding key": ["study", "decoding", "--config", "configs/decoding-study.yaml", "bogus=1"],
    "sample missing model": ["sample", "--model", "nowhere", "--task", "maze"],
    "sample bad flag": ["sample", "--model", "nowhere", "--task", "maze", "n=0"],
    "eval missing model": ["eval", "--model", "nowhere", "--task", "increment"],
    "eval bad flag": ["eval", "--model", "nowhere", "--task", "increment", "--gen-lengths", "0"],
    "train missing base": ["train", "--config", "configs/dtm-increment.yaml", "base_model=nowhere"],
    "pretrain key": ["pretrain", "--config", "configs/pretrain-increment.yaml", "bogus=1"],
}
PROBE = """
import json, sys
from dtm.cli import main
try:
    main(json.loads(sys.argv[1]))
    code = 0
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "torch": "torch" in sys.modules}))
"""


@pytest.mark.parametrize("argv", NO_MODEL_ERRORS.values(), ids=NO_MODEL_ERRORS.keys())
def test_errors_that_need_no_model_come_before_torch_is_imported(argv):
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)], cwd=root, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"code": 2, "torch": False}
    assert f"dtm {argv[0]}: error:" in done.stderr
