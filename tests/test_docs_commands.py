"""Every command in the README and docs/ runs as written, shrunk to a few steps, and exits 0.

Commands are read from the documents themselves: lines of shell code blocks, and inline code that starts like a
command (a bare ``dtm NAME`` names a command and is skipped). A new command in the docs fails here until it runs or
is listed in ``NOT_RUN`` with the reason. They run in document order (the README, then docs/ by name) in a sandbox
folder that looks like a fresh checkout: ``configs/`` and ``scripts/`` linked, ``docs/`` copied, an empty ``runs/``,
and a ``.venv`` whose ``dtm`` is tests/docs_shim.py, the real CLI with each run's size overridden (also inside the
scripts). A command's inputs are what the commands before it made, as for a reader who follows the docs from the top.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"^(?:(?:\.venv/bin/\w+|dtm|python|accelerate|sbatch) |bash scripts/)")
NAME = re.compile(r"^dtm \w+$")  # `dtm eval` in prose names a command

# Documented text that looks like a command but is not run here, with the reason.
MENTION = "a command named in prose, not a command line"
TEMPLATE = "a template with placeholders"
GPUS = "needs GPUs (tests/test_accelerate_configs.py checks the accelerate configs)"
NOT_RUN: dict[str, str] = {
    "bash scripts/test.sh": "the test suite itself",
    "bash scripts/test.sh -m slow": "the slow tests of the suite",
    "dtm study fit": MENTION,
    "dtm study compare": MENTION,
    "dtm study maze": MENTION,
    "dtm study decoding": MENTION,
    "dtm config show": MENTION,
    "dtm train --config": MENTION,
    "dtm config show KIND": TEMPLATE,
    "dtm merge FOLDER FOLDER ... --output-dir OUT": TEMPLATE,
    "dtm export RUN_DIR OUT_DIR": TEMPLATE,
    "dtm study compare --config docs/compare/maze64-tuning/NAME/compare.yaml": TEMPLATE,
    "dtm train method=mine": "the hypothetical method of docs/methods.md's 'Adding a method' (tests/test_methods.py)",
    "dtm config show mine": "the hypothetical method of docs/methods.md's 'Adding a method' (tests/test_methods.py)",
    "dtm study maze ... rollout_decoding={threshold: 0.9}": TEMPLATE,
    ".venv/bin/dtm convert MODEL_DIR_OR_GGUF --output-dir runs/dlm": TEMPLATE,
    ".venv/bin/dtm sft --config configs/real/sft.yaml base_model=runs/dlm": "needs the folder of the template above",
    "sbatch --nodes=4 --gpus-per-node=2 scripts/slurm_dtm.sh CONFIG.yaml [key=value ...]": TEMPLATE,
    **{
        f"accelerate launch --config_file configs/accelerate/{name} -m dtm.cli train --config CONFIG.yaml": TEMPLATE
        for name in ("single_gpu.yaml", "ddp_8gpu.yaml", "fsdp_8gpu.yaml", "deepspeed_zero2_8gpu.yaml")
    },
    "accelerate launch --config_file configs/accelerate/ddp_8gpu.yaml -m dtm.cli train --config "
    "configs/llada/countdown.yaml": GPUS,
    "dtm eval --model models/LLaDA-8B-Instruct --trust-remote-code --dtype bfloat16 --adapter "
    "runs/llada-countdown/final/adapter --task countdown --gen-lengths 128 256 512": "needs LLaDA-8B and a GPU",
    ".venv/bin/python scripts/gpu_check.py --out runs/gpu_check.json": (
        "needs a GPU (its CPU shape runs in tests/test_gpu_check.py)"
    ),
}


def documented_commands(text: str) -> list[str]:
    """The commands of one document, in order: lines of shell code blocks (continuations joined, comments cut) and
    inline code that starts like a command."""
    found = []
    for match in re.finditer(r"```(\w*)\n(.*?)```|`([^`]+)`", text, re.S):
        language, block, inline = match.groups()
        if block is not None:
            if language not in ("bash", "sh", "shell", ""):
                continue
            lines = re.sub(r"\\\n\s*", " ", block).splitlines()
        else:
            lines = [" ".join(inline.split())]
        for line in lines:
            line = " ".join(re.sub(r"\s+#.*$", "", line).split())
            if COMMAND.match(line) and not NAME.match(line):
                found.append(line)
    return found


def all_commands() -> list[str]:
    seen: dict[str, None] = {}
    for doc in DOCS:
        seen.update(dict.fromkeys(documented_commands(doc.read_text())))
    return list(seen)


def test_documented_commands_are_found():
    text = "Run `bash scripts/main.sh --overwrite`.\n```bash\n.venv/bin/dtm eval --model M \\\n  --task maze  # M\n```"
    assert documented_commands(text) == ["bash scripts/main.sh --overwrite", ".venv/bin/dtm eval --model M --task maze"]
    assert documented_commands("```python\ndtm = 1\n```") == []
    unknown = set(NOT_RUN) - set(all_commands())
    assert not unknown, f"NOT_RUN lists commands no document has: {sorted(unknown)}"


def _sandbox(tmp: Path) -> dict[str, str]:
    """A fresh-checkout look-alike in ``tmp`` (module docstring); returns the environment to run commands in."""
    for name in ("configs", "scripts", "pyproject.toml", *(p.name for p in ROOT.glob("requirements*.txt"))):
        (tmp / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "docs", tmp / "docs")
    venv, real_venv = tmp / ".venv", ROOT / ".venv"
    (venv / "bin").mkdir(parents=True)
    shutil.copy(real_venv / "pyvenv.cfg", venv)
    for name in ("lib", "lib64", "include"):
        if (real_venv / name).exists():
            (venv / name).symlink_to(real_venv / name)
    for stamp in real_venv.glob(".*-*"):
        (venv / stamp.name).touch()
    # scripts/real_model.sh's install stamp: the first 16 hex digits of sha256sum requirements-real.txt
    (venv / f".real-{hashlib.sha256((ROOT / 'requirements-real.txt').read_bytes()).hexdigest()[:16]}").touch()
    for entry in (real_venv / "bin").iterdir():
        if entry.name != "dtm":
            (venv / "bin" / entry.name).symlink_to(entry)
    shim = venv / "bin" / "dtm"
    shim.write_text(f'#!/bin/sh\nexec "{venv}/bin/python" -m tests.docs_shim "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PYTHONPATH=str(ROOT), DTM_DOCS_LOG=str(tmp / "dtm-calls.jsonl"), DTM_THREADS="1")
    env |= {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("DTM_TRACEBACK", None)
    return env


def _as_run(command: str) -> str:
    """The shell line that runs a documented command in the sandbox (bare ``dtm`` and ``python`` are the venv's)."""
    command = re.sub(r"^dtm ", ".venv/bin/dtm ", command)
    command = re.sub(r"^python ", ".venv/bin/python ", command)
    return command.replace("-m dtm.cli", "-m tests.docs_shim")


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists(), reason="needs the project's .venv")
def test_every_documented_command_runs(tmp_path):
    env = _sandbox(tmp_path)
    failures = []
    for command in all_commands():
        if command in NOT_RUN:
            continue
        done = subprocess.run(["bash", "-c", _as_run(command)], cwd=tmp_path, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            failures.append(f"$ {command}\n(exit {done.returncode})\n{(done.stdout + done.stderr)[-1500:]}")
    assert not failures, "\n\n".join(failures)
    calls = (tmp_path / "dtm-calls.jsonl").read_text()
    assert '["study", "maze"' in calls and '["train"' in calls  # the shim ran the commands, scripts included
