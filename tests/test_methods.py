"""The method registry (dtm/methods.py): each row names real classes, and a new row is all that the CLI help, the
config reference, the top-level API, the trainer dispatch, `dtm export` and `dtm study compare` need, as the
"Adding a method" section of docs/methods.md says (its example row is the one registered here)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dtm.config.run import RunConfig
from dtm.methods import FAMILIES, METHODS, Method, get_method

ROOT = Path(__file__).resolve().parents[1]


def docs_section() -> str:
    text = (ROOT / "docs" / "methods.md").read_text(encoding="utf-8")
    return text.split("## Adding a method", 1)[1].split("\n## ", 1)[0]


def docs_row() -> str:
    """The example registry row of the docs section (its ``python`` code block)."""
    match = re.search(r"```python\n(.*?)```", docs_section(), re.DOTALL)
    assert match and "Method(" in match.group(1), "docs/methods.md, Adding a method: no Method(...) example"
    return textwrap.dedent(match.group(1)).strip()


@pytest.mark.parametrize("name", list(METHODS))
def test_every_row_names_its_config_and_trainer(name):
    from dtm.training.trainer import Trainer

    method = METHODS[name]
    config = method.config_class()
    assert issubclass(config, RunConfig) and config().method == name
    assert issubclass(method.trainer_class(), Trainer)
    assert method.family in FAMILIES and method.summary and method.title


def test_bad_rows_and_unknown_names_are_refused():
    with pytest.raises(ValueError, match="config must be 'module:Class'"):
        Method("x", "X", "tilt", "x", "dtm.config.dtm.DTMConfig", "dtm.training.dtm:DTMTrainer")
    with pytest.raises(ValueError, match="family must be one of tilt, elbo"):
        Method("x", "X", "rl", "x", "dtm.config.dtm:DTMConfig", "dtm.training.dtm:DTMTrainer")
    with pytest.raises(ValueError, match=r"method: must be one of 'dtm', .*, got 'ppo'"):
        get_method("ppo")


def test_docs_example_row_is_a_valid_row_and_names_the_steps():
    row = eval(docs_row(), {"Method": Method})
    assert isinstance(row, Method)
    section = docs_section()
    for path in ("dtm/methods.py", "dtm/diffusion/", "python -m dtm.config.reference > docs/configs.md"):
        assert path in section
    for field in dataclasses.fields(Method):
        assert f"`{field.name}`" in section, f"the docs section does not explain the field {field.name!r}"


TOY = """
import json, sys
import dtm.methods as registry

row = eval(sys.argv[1], {"Method": registry.Method})
registry.METHODS["toy"] = row  # before anything else of dtm is imported

import dtm
from dtm.cli import build_parser
from dtm.config.reference import KINDS, reference_markdown
from dtm.config.studies.compare import CompareConfig
from dtm.export import export_run
from dtm.models import save_model
from dtm.training import load_train_config, make_trainer
from tests.shared import tiny_model
from tests.toy_method import ToyConfig, ToyTrainer

out = sys.argv[2]
save_model(tiny_model(), out + "/base")
cfg = load_train_config(
    {"base_model": out + "/base", "output_dir": out + "/run", "rollout_batches": 2, "num_generations": 2,
     "micro_batch": 4, "prompt_pool": 8, "eval_prompts": 0},
    ["method=toy"],
)
trainer = make_trainer(cfg, progress=False)
trainer.train()
export_run(out + "/run", out + "/export")
parser = build_parser()
print(json.dumps({
    "config": type(cfg) is ToyConfig,
    "trainer": type(trainer) is ToyTrainer,
    "api": dtm.ToyConfig is ToyConfig and dtm.ToyTrainer is ToyTrainer and "ToyConfig" in dir(dtm),
    "kinds": KINDS["toy"][2],
    "reference": "## `method: toy`" in reference_markdown(),
    "train_help": [a.help for a in parser._subparsers._group_actions[0]._choices_actions if a.dest == "train"][0],
    "compare": CompareConfig(methods=["dtm", "toy"], base_model=out + "/base").methods,
    "card": open(out + "/export/README.md").read(),
}))
"""


def test_one_registry_row_adds_a_method_everywhere(tmp_path):
    row = docs_row().replace('"dtm.config.mine:MyConfig"', '"tests.toy_method:ToyConfig"')
    row = row.replace('"dtm.training.mine:MyTrainer"', '"tests.toy_method:ToyTrainer"').replace('"mine"', '"toy"')
    proc = subprocess.run(
        [sys.executable, "-c", TOY, row, str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.splitlines()[-1])
    title = eval(row, {"Method": Method}).title
    assert seen["config"] and seen["trainer"] and seen["api"]
    assert seen["kinds"] == "dtm train (method: toy)" and seen["reference"]
    assert "toy" in seen["train_help"] and seen["compare"] == ["dtm", "toy"]
    assert f"**Method:** {title} (`method: toy`)" in seen["card"]
