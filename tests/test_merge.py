"""``dtm merge``: comparisons on the same bases join into one table; rows they share must be the same runs, and
comparisons on other bases, prompts or samplers are refused."""

from __future__ import annotations

import json

import pytest
import yaml

from dtm.cli import main
from dtm.studies.compare import METRICS, summarize
from dtm.studies.merge import merge_comparisons, merge_results

SAMPLING = {"gen_length": 8, "block_length": 4, "decode_steps": 8, "temperature": 1.0}


def row(budget: str, method: str, seed: int, reward: float, wall_time: float = 1.0) -> dict:
    values = dict.fromkeys((key for key, _ in METRICS), 0.5)
    return values | {"budget": budget, "method": method, "seed": seed, "greedy_reward": reward, "wall_time": wall_time}


def comparison(folder, methods: dict[str, float], *, task: str = "maze", sampling: dict | None = None, wall=1.0):
    """A comparison folder: base and ``methods`` (greedy reward by method, + seed / 10) at equal rollouts."""
    folder.mkdir(parents=True)
    cfg = {"task": task, "base_model": "bases/seed{seed}", "methods": list(methods), "seeds": [0, 1]}
    cfg |= {"rollouts": 10, "budgets": ["rollouts"]}
    cfg["shared"] = {"sampling": sampling or SAMPLING}
    (folder / "compare.yaml").write_text(yaml.safe_dump(cfg))
    runs = [row("base", "base", seed, 0.2 + seed / 10) for seed in (0, 1)]
    runs += [row("rollouts", m, seed, r + seed / 10, wall) for m, r in methods.items() for seed in (0, 1)]
    curves = {"rollouts": {m: [[[0, 0.2], [10, r]]] * 2 for m, r in methods.items()}}
    (folder / "results.json").write_text(json.dumps({"runs": runs, "summary": summarize(runs), "curves": curves}))
    return folder


def test_shared_runs_appear_once_and_every_method_is_summarised(tmp_path):
    a = comparison(tmp_path / "a", {"dtm": 0.6, "wd1": 0.7})
    b = comparison(tmp_path / "b", {"dtm": 0.6, "dmpo": 0.8}, wall=9.0)  # DTM rerun: other wall time, same metrics
    merged = merge_comparisons([a, b], tmp_path / "out")
    assert [(r["budget"], r["method"], r["seed"]) for r in merged["runs"]] == [
        ("base", "base", 0),
        ("base", "base", 1),
        ("rollouts", "dtm", 0),
        ("rollouts", "dtm", 1),
        ("rollouts", "wd1", 0),
        ("rollouts", "wd1", 1),
        ("rollouts", "dmpo", 0),
        ("rollouts", "dmpo", 1),
    ]
    summary = merged["summary"]["rollouts"]
    assert list(summary) == ["dtm", "wd1", "dmpo"]
    assert summary["dmpo"]["greedy_reward"] == pytest.approx(0.85) and summary["dtm"]["wall_time"] == 1.0
    assert set(merged["curves"]["rollouts"]) == {"dtm", "wd1", "dmpo"}
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved == json.loads(json.dumps(merged)) | {"sources": [str(a), str(b)]}
    assert "| dmpo |" in (tmp_path / "out" / "report.md").read_text()
    assert (tmp_path / "out" / "reward_vs_rollouts.png").stat().st_size > 1000


def test_a_shared_run_with_other_metrics_is_refused():
    first = [row("rollouts", "dtm", 0, 0.6)]
    other = [row("rollouts", "dtm", 0, 0.61)]
    with pytest.raises(ValueError, match=r"b: greedy_reward of dtm \(budget rollouts, seed 0\) is 0.61, but 0.6 in a"):
        merge_results([{"runs": first, "curves": {}}, {"runs": other, "curves": {}}], ["a", "b"])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task": "sudoku_digits"}, r"task is 'sudoku_digits', but 'maze'"),
        ({"sampling": SAMPLING | {"temperature": 0.5}}, "shared.sampling is"),
    ],
)
def test_comparisons_on_other_settings_are_refused(tmp_path, changes, message):
    a = comparison(tmp_path / "a", {"dtm": 0.6})
    b = comparison(tmp_path / "b", {"dmpo": 0.8}, **changes)
    with pytest.raises(ValueError, match=message):
        merge_comparisons([a, b], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_merges_and_reports_bad_folders(tmp_path, capsys):
    a = comparison(tmp_path / "a", {"dtm": 0.6})
    b = comparison(tmp_path / "b", {"dmpo": 0.8}, sampling={**SAMPLING, "steps": 8})
    with pytest.raises(SystemExit):
        main(["merge", str(a), str(b), "--output-dir", str(tmp_path / "out")])
    assert "renamed to decode_steps" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["merge", str(a), str(tmp_path / "missing"), "--output-dir", str(tmp_path / "out")])
    assert "missing/compare.yaml: not found" in capsys.readouterr().err
    cfg = yaml.safe_load(b.joinpath("compare.yaml").read_text())
    b.joinpath("compare.yaml").write_text(yaml.safe_dump(cfg | {"shared": {"sampling": SAMPLING}}))
    main(["merge", str(a), str(b), "--output-dir", str(tmp_path / "out")])
    assert "| dmpo |" in capsys.readouterr().out
