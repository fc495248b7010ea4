"""The config schema as users see it: help on every key, docs/configs.md generated from it, `dtm config show`,
flags derived from it, renamed keys refused with their new name, and a bad config failing before torch loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dtm.cli import build_parser, main
from dtm.config import ConfigError, describe, load_config
from dtm.config.choices import TASK_NAMES, TOKEN_TASKS
from dtm.config.evaluation import EvalConfig
from dtm.config.reference import KINDS, missing_help, reference_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_every_key_of_every_kind_has_help():
    assert missing_help() == []


def test_configs_md_is_generated_from_the_config_classes():
    text = (ROOT / "docs" / "configs.md").read_text(encoding="utf-8")
    assert text == reference_markdown(), "docs/configs.md is stale: python -m dtm.config.reference > docs/configs.md"


def test_reference_lists_every_key_of_every_kind():
    text = reference_markdown()
    for kind in KINDS:
        cls = __import__(KINDS[kind][0], fromlist=[KINDS[kind][1]])
        for row in describe(getattr(cls, KINDS[kind][1])):
            assert f"| `{row.key}` |" in text, f"{kind}: {row.key}"


def test_task_names_match_the_registry():
    from dtm.tasks import TASKS, task_names

    assert sorted(TASK_NAMES) == task_names() and set(TOKEN_TASKS) == set(TASKS)


def test_config_show_prints_every_key_with_default_and_help(capsys):
    main(["config", "show", "dtm"])
    out = capsys.readouterr().out
    for row in describe(_dtm_config()):
        assert f"{row.key}: {row.type} = {row.default}\n    {row.help}" in out


def _dtm_config() -> type:
    from dtm.config.dtm import DTMConfig

    return DTMConfig


def test_config_show_lists_kinds_and_rejects_unknown_ones(capsys):
    main(["config", "show"])
    listing = capsys.readouterr().out
    assert all(f"{kind} " in listing for kind in KINDS)
    with pytest.raises(SystemExit) as info:
        main(["config", "show", "dtmm"])
    assert info.value.code == 2 and "unknown config kind 'dtmm'" in capsys.readouterr().err


def test_eval_flags_come_from_the_eval_config():
    eval_parser = build_parser()._subparsers._group_actions[0].choices["eval"]
    flags = {action.dest.removeprefix("flag:"): action for action in eval_parser._actions}
    for row in describe(EvalConfig):
        if row.key == "task_options":
            continue  # a mapping: set as task_options.KEY=VALUE
        assert row.key in flags, row.key
        assert flags[row.key].help == f"{row.help} (default: {row.default})"


@pytest.mark.parametrize(
    ("kind", "override", "message"),
    [
        ("dtm", "teacher=lora", "teacher: renamed to finetune"),
        ("dtm", "sampling.batch_size=4", "sampling.batch_size: renamed to sampling.decode_batch"),
        ("wd1", "steps=4", "steps: renamed to rollout_batches"),
        ("pretrain", "model.hidden_size=4", "model: renamed to architecture"),
        ("eval", "steps=4", "steps: renamed to decode_steps"),
    ],
)
def test_old_key_names_are_refused_with_the_new_name(kind, override, message):
    from dtm.config.reference import config_class

    overrides = [override] + (["model=m"] if kind == "eval" else [])
    with pytest.raises(ConfigError, match=message):
        load_config(config_class(kind), None, overrides)


def test_renamed_key_in_a_file_names_the_file(tmp_path):
    from dtm.config.dtm import DTMConfig

    path = tmp_path / "old.yaml"
    path.write_text("teacher: lora\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{path}: teacher: renamed to finetune"):
        load_config(DTMConfig, path)


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    """``dtm`` in a fresh interpreter that reports, after the command, whether torch was imported."""
    code = (
        "import sys\nfrom dtm.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
        "    print('exit', e.code, 'torch' in sys.modules)\n"
    )
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT, check=False)


@pytest.mark.parametrize(
    ("contents", "override", "message"),
    [
        ("lr: [1\n", None, "invalid YAML"),
        ("h: -1\n", None, "h: must be > 0"),
        ("h: 1\n", "lr=-1", "override 'lr=-1': lr: must be positive"),
        ("teacher: copy\n", None, "teacher: renamed to finetune"),
    ],
)
def test_a_bad_training_config_fails_before_torch_is_imported(tmp_path, contents, override, message):
    path = tmp_path / "bad.yaml"
    path.write_text(contents, encoding="utf-8")
    result = run_cli("train", "--config", str(path), *([override] if override else []))
    assert "exit 2 False" in result.stdout and message in result.stderr


def test_train_checks_the_output_folder_before_loading_the_model(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{not a model", encoding="utf-8")  # loading it would fail differently
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("x", encoding="utf-8")
    result = run_cli("train", f"base_model={base}", f"output_dir={out}")
    assert "exit 2 False" in result.stdout
    assert "is not empty; pass --resume to continue or --overwrite to replace" in result.stderr


def test_pretrain_hint_does_not_offer_resume(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("x", encoding="utf-8")
    result = run_cli("pretrain", f"output_dir={out}")
    assert "exit 2 False" in result.stdout and "pass --overwrite to replace it" in result.stderr
    assert "--resume" not in result.stderr


def test_threads_default_to_half_the_cores_and_can_be_set(monkeypatch):
    import os

    from dtm.cli import default_threads

    assert default_threads() == max(1, (os.cpu_count() or 2) // 2)
    code = "import os, sys\nfrom dtm.cli import set_threads\nset_threads({})\nprint(os.environ['OMP_NUM_THREADS'])"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "DTM_THREADS")}
    run = lambda arg, **extra: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code.format(arg)], capture_output=True, text=True, env=env | extra, cwd=ROOT
    ).stdout.strip()
    assert run("None") == str(default_threads())
    assert run("3") == "3"
    assert run("None", DTM_THREADS="2") == "2"


def test_resume_with_other_settings_fails_before_torch_is_imported(tmp_path):
    from dtm.config import save_config
    from dtm.config.dtm import DTMConfig

    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}", encoding="utf-8")
    out = tmp_path / "run"
    save_config(DTMConfig(base_model=str(base), output_dir=str(out)), out / "config.yaml")
    result = run_cli("train", "--config", str(out / "config.yaml"), "h=0.5", "--resume")
    assert "exit 2 False" in result.stdout and "h: 2.0 in the run, 0.5 now" in result.stderr
