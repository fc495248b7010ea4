"""Every results table in the README and docs/ is regenerated here from the run's own results.json (committed under
docs/), and every "mean ± std" quoted in their text must appear in one of those tables: a number that no longer comes
from its run fails."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from dtm.studies import compare, decoding, fit, maze
from dtm.studies.merge import merge_results

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _summary(path: Path, summarize: Callable[[list], dict]) -> dict:
    """The summary of a committed results.json, recomputed from its raw runs by the current code (and checked
    against the one the run wrote)."""
    results = json.loads(path.read_text())
    summary = summarize(results["runs"])
    assert json.loads(json.dumps(summary)) == results["summary"], f"{path}: summary is stale"
    return summary


# The tuning records of the narrow-base maze comparison (docs/compare/maze64-tuning/<name>/).
MAZE64_TUNING = ("updates-default", "lr1.0e-3", "lr1.0e-4", "updates4", "dtm-a48", "dtm-s300", "dtm-a48-s300", "dtm-h3")
# The second tuning round, on the bases of the rerun (docs/compare/maze64-rerun-tuning/<name>/).
MAZE64_RERUN_TUNING = ("dtm-norm", "dtm-lr5.0e-4", "lr5.0e-4", "updates8")

# (document, results.json under docs/, the study's summary function, its table renderer)
TABLES: list[tuple[str, str, Callable[[list], dict], Callable[[dict], str]]] = [
    ("docs/fit.md", "fit/levers/results.json", fit.summarize, fit.variant_table),
    ("docs/fit.md", "fit/levers/results.json", fit.summarize, lambda s: fit.variant_table(s, "train")),
    ("docs/fit.md", "fit/reach/results.json", fit.summarize, fit.variant_table),
    ("docs/fit.md", "fit/reach/results.json", fit.summarize, lambda s: fit.variant_table(s, "train")),
    ("docs/fit.md", "fit/reach/results.json", fit.summarize, fit.final_table),
    ("docs/fit.md", "fit/maze/results.json", fit.summarize, lambda s: fit.phase_table(s["dtm"])),
    ("docs/fit.md", "fit/maze/results.json", fit.summarize, fit.final_table),
    ("docs/fit.md", "fit/schedule/results.json", fit.summarize, fit.variant_table),
    ("docs/fit.md", "fit/schedule/results.json", fit.summarize, lambda s: fit.variant_table(s, "train")),
    ("docs/fit.md", "fit/schedule/results.json", fit.summarize, fit.final_table),
    ("docs/fit.md", "fit/maze4/results.json", fit.summarize, fit.variant_table),
    ("docs/fit.md", "fit/maze4/results.json", fit.summarize, lambda s: fit.variant_table(s, "train")),
    ("docs/fit.md", "fit/maze4/results.json", fit.summarize, fit.final_table),
    ("docs/fit.md", "fit/draws/results.json", fit.summarize, fit.variant_table),
    ("docs/fit.md", "fit/draws/results.json", fit.summarize, lambda s: fit.variant_table(s, "train")),
    ("docs/fit.md", "fit/draws/results.json", fit.summarize, fit.final_table),
    *[
        ("docs/fit.md", f"maze-study/trials/{trial}/results.json", maze.summarize, maze.markdown_table)
        for trial in (
            "a24",
            "a24-s128",
            "a12-s128",
            "a24-s64-lr6e-4",
            "a12-h6-s64-lr8e-4-t160-b128",
            "a24-s64-lr1e-3-t160-b128-plr3e-3",
            "a24-h12-s64-lr6e-4-b128",
            "a24-h12-w96-t280",
            "fixed-bases-lr1e-3",
            "fixed-bases-b256",
        )
    ],
    *[
        ("docs/fit.md", "fit/schedule/results.json", fit.summarize, partial(lambda s, v: fit.phase_table(s[v]), v=v))
        for v in ("h = 3, a_end = 12", "h = 6, a_end = 24", "h = 12, a_end = 48", "h = 25, a_end = 100")
    ],
    ("docs/compare.md", "compare/maze64/results.json", compare.summarize, compare.headline_table),
    ("docs/compare.md", "compare/maze64/results.json", compare.summarize, compare.markdown_tables),
    ("docs/compare.md", "compare/maze64-seeds345/results.json", compare.summarize, compare.headline_table),
    ("docs/compare.md", "compare/maze64-rerun/results.json", compare.summarize, compare.headline_table),
    *[
        ("docs/compare.md", f"compare/maze64-rerun-tuning/{n}/results.json", compare.summarize, compare.headline_table)
        for n in MAZE64_RERUN_TUNING
    ],
    *[
        ("docs/compare.md", f"compare/maze64-tuning/{name}/results.json", compare.summarize, compare.headline_table)
        for name in MAZE64_TUNING
    ],
    ("docs/compare.md", "compare/maze/results.json", compare.summarize, compare.headline_table),
    ("docs/compare.md", "compare/maze-all/results.json", compare.summarize, compare.headline_table),
    ("docs/compare.md", "compare/maze/results.json", compare.summarize, compare.markdown_tables),
    ("docs/compare.md", "compare/maze-baselines-lr1e-4/results.json", compare.summarize, compare.markdown_tables),
    ("docs/compare.md", "compare/maze-peers/results.json", compare.summarize, compare.headline_table),
    ("docs/compare.md", "compare/maze-peers/results.json", compare.summarize, compare.markdown_tables),
    ("docs/compare.md", "compare/maze-peers-lr1e-4/results.json", compare.summarize, compare.markdown_tables),
    ("docs/compare.md", "compare/sudoku/results.json", compare.summarize, compare.headline_table),
    ("docs/compare.md", "compare/sudoku/results.json", compare.summarize, compare.markdown_tables),
    ("docs/compare.md", "compare/sudoku-peers/results.json", compare.summarize, compare.markdown_tables),
    ("README.md", "fit/maze/results.json", fit.summarize, lambda s: fit.phase_table(s["dtm"])),
    ("README.md", "compare/maze64/results.json", compare.summarize, compare.headline_table),
    ("README.md", "compare/sudoku-all/results.json", compare.summarize, compare.headline_table),
    ("README.md", "maze-study/results.json", maze.summarize, maze.markdown_table),
    ("docs/maze-study/rerun/report.md", "maze-study/rerun/results.json", maze.summarize, maze.markdown_table),
    *[
        (
            f"docs/maze-study/trials/{trial}/report.md",
            f"maze-study/trials/{trial}/results.json",
            maze.summarize,
            maze.markdown_table,
        )
        for trial in ("a12-h3-s32", "a24-h12-s64-lr6e-4-b128-rerun")
    ],
    *[
        (
            "docs/decoding.md",
            "decoding/study/results.json",
            decoding.summarize,
            partial(decoding.markdown_table, model=m),
        )
        for m in ("maze base", "maze DTM", "sudoku base")
    ],
    *[
        (
            "docs/decoding.md",
            "decoding/buffer/results.json",
            decoding.buffer_summary,
            partial(decoding.buffer_table, arm=a),
        )
        for a in ("small-h c=1", "one-phase c=1")
    ],
]


# Paired differences pooled over comparison records with bases pretrained apart:
# (document, the records under docs/, method, the method it is paired with).
MAZE64_BASES = ("compare/maze64", "compare/maze64-seeds345", "compare/maze64-rerun")
POOLED = [
    ("docs/compare.md", MAZE64_BASES, "dtm", "diffu_grpo"),
    ("README.md", MAZE64_BASES, "dtm", "diffu_grpo"),
]


def _pooled_table(records: tuple[str, ...], method: str, other: str) -> str:
    rows = {name: json.loads((DOCS / name / "results.json").read_text())["runs"] for name in records}
    return compare.paired_table(compare.paired_differences(rows, method, other), method, other)


def _rendered() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for doc, results, summarize, render in TABLES:
        out.setdefault(doc, []).append(render(_summary(DOCS / results, summarize)))
    for doc, records, method, other in POOLED:
        out.setdefault(doc, []).append(_pooled_table(records, method, other))
    return out


@pytest.mark.parametrize(("doc", "records", "method", "other"), POOLED, ids=[p[0] for p in POOLED])
def test_pooled_paired_tables_are_regenerated_from_their_runs(doc, records, method, other):
    table = _pooled_table(records, method, other)
    assert table in (ROOT / doc).read_text(), f"{doc} does not hold the paired table of {records} (stale or edited?)"


def test_rerun_and_pooled_distances_are_recomputed():
    """docs/compare.md and the README say how far the rerun's means land from the record's (in the record's stds)
    and how far the pooled paired means are from zero (in standard errors, std / sqrt(bases)); recompute them."""
    record, rerun = (
        _summary(DOCS / "compare" / name / "results.json", compare.summarize)["rollouts"]
        for name in ("maze64", "maze64-rerun")
    )
    compare_md = " ".join((DOCS / "compare.md").read_text().split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    distances = [
        (record[m]["greedy_reward"] - rerun[m]["greedy_reward"]) / record[m]["greedy_reward_std"]
        for m in ("dtm", "diffu_grpo")
    ]
    assert f"lands {distances[0]:.1f} recorded stds below the record's" in compare_md
    assert f"lands {distances[1]:.1f} recorded stds below its record's" in compare_md
    rows = {name: json.loads((DOCS / name / "results.json").read_text())["runs"] for name in MAZE64_BASES}
    paired = compare.paired_differences(rows, "dtm", "diffu_grpo")
    greedy, distinct, sampled = (
        abs(paired[key]["mean"]) / (paired[key]["std"] / paired[key]["bases"] ** 0.5)
        for key in ("greedy_reward", "distinct_correct", "sampled_reward")
    )
    assert f"the mean is {greedy:.1f} standard errors, std / 3, from zero" in compare_md
    assert f"5 of 9; {distinct:.1f} standard errors)" in compare_md
    assert f"ahead on 8 of 9, {sampled:.1f} standard errors from zero" in compare_md
    assert f"(a mean {sampled:.1f} standard errors above zero)" in readme
    assert paired["greedy_reward"]["bases"] == 9


@pytest.mark.parametrize(("doc", "results", "summarize", "render"), TABLES, ids=[f"{t[0]}:{t[1]}" for t in TABLES])
def test_tables_are_regenerated_from_their_runs(doc, results, summarize, render):
    table = render(_summary(DOCS / results, summarize))
    assert table in (ROOT / doc).read_text(), f"{doc} does not hold the table of docs/{results} (stale or edited?)"


@pytest.mark.parametrize("doc", sorted({t[0] for t in TABLES} | {p[0] for p in POOLED}))
def test_every_quoted_mean_and_std_comes_from_a_table(doc):
    """A number quoted in the text must appear in a regenerated table (of this document or of one it summarises)."""
    tables = "\n".join(table for doc_tables in _rendered().values() for table in doc_tables)
    quoted = set(re.findall(r"-?\d+\.\d+ ± \d+\.\d+", (ROOT / doc).read_text()))
    missing = sorted(q for q in quoted if q not in tables)
    assert not missing, f"{doc} quotes numbers that no results table holds: {missing}"


MERGED = sorted(
    path.parent.name for path in (DOCS / "compare").glob("*/results.json") if "sources" in json.loads(path.read_text())
)


@pytest.mark.parametrize("folder", MERGED)
def test_merged_results_are_the_merge_of_their_sources(folder):
    """A table merged by `dtm merge` must still be what its source comparisons give."""
    saved = json.loads((DOCS / "compare" / folder / "results.json").read_text())
    sources = saved.pop("sources")
    results = [json.loads((ROOT / source / "results.json").read_text()) for source in sources]
    assert json.loads(json.dumps(merge_results(results, sources))) == saved, f"docs/compare/{folder} is stale"


def test_dmpo_sudoku_log_numbers_come_from_its_logs():
    """docs/compare.md explains DMPO on Sudoku from its training logs (committed beside the run's records)."""
    first, last, drift = [], [], []
    for seed in (0, 1, 2):
        path = DOCS / "compare" / "sudoku-peers" / "dmpo-metrics" / f"seed{seed}.jsonl"
        steps = [r for r in map(json.loads, path.read_text().splitlines()) if "loss" in r]
        first.append(sum(r["reward_mean"] for r in steps[:10]) / 10)
        last.append(sum(r["reward_mean"] for r in steps[-10:]) / 10)
        drift.append(sum(abs(r["log_ratio"]) for r in steps[-10:]) / 10)
    text = " ".join((DOCS / "compare.md").read_text().split())
    rewards = ", ".join(f"{a:.3f} -> {b:.3f}" for a, b in zip(first, last, strict=True))
    assert rewards in text
    assert f"{drift[0]:.1f}, {drift[1]:.1f} and {drift[2]:.1f} nats" in text


def test_maze_study_rerun_lands_where_the_readme_says():
    """The README counts the means of the rerun (seeds 3-5) within two standard deviations of the recorded table's,
    wall times aside, and names the ones outside; recount them from both records."""
    record = _summary(DOCS / "maze-study" / "results.json", maze.summarize)
    rerun = _summary(DOCS / "maze-study" / "rerun" / "results.json", maze.summarize)
    outside, total = [], 0
    for arm, row in record.items():
        for key, old in row.items():
            if key in maze.TIMINGS:
                continue
            new = rerun[arm][key]
            total += 1
            if abs(new["mean"] - old["mean"]) > 2 * max(old["std"], new["std"]):
                outside.append((arm, key))
    text = " ".join((ROOT / "README.md").read_text().split())
    assert f"{total - len(outside)} of the {total} means of its record" in text
    assert sorted(outside) == [("one-phase c=adaptive", "distinct")]
    old, new = record["one-phase c=adaptive"]["distinct"], rerun["one-phase c=adaptive"]["distinct"]
    assert f"({new['mean']:.3f} against {old['mean']:.3f}, both with a spread below 0.02)" in text
    assert max(old["std"], new["std"]) < 0.02


def test_real_model_numbers_come_from_the_committed_run():
    """The SmolLM2 table (README, docs/real-model.md) is the report of the run committed in docs/real-model."""
    spec = importlib.util.spec_from_file_location("real_model_report", ROOT / "scripts" / "real_model_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    run = DOCS / "real-model"
    summary = report.collect(run)
    assert json.loads(json.dumps(summary)) == json.loads((run / "summary.json").read_text()), "summary.json is stale"
    for doc in ("README.md", "docs/real-model.md"):
        assert report.table(summary) in (ROOT / doc).read_text(), f"{doc} does not hold the table of docs/real-model"


def test_exact_rollout_buffer_runs_repeat_the_maze_study():
    """The buffer comparison's exact-rollout runs are the c = 1 arms of the maze study's earlier settings (h = 3 to
    a_end = 12, 32 masked states per step) on the same bases and machine: every metric but the wall times must be
    those of that study's rerun."""
    buffer = json.loads((DOCS / "decoding" / "buffer" / "results.json").read_text())["runs"]
    rerun = json.loads((DOCS / "maze-study" / "trials" / "a12-h3-s32-rerun" / "results.json").read_text())["runs"]
    exact = next(iter(buffer.values()))
    for run, study in zip(exact, rerun, strict=True):
        assert run["seed"] == study["seed"]
        for arm in ("base", "small-h c=1", "one-phase c=1"):
            shared = set(run["results"][arm]) & set(study["results"][arm])
            assert len(shared) > 10 and all(run["results"][arm][k] == study["results"][arm][k] for k in shared)


def test_fast_decoding_benchmark_tables_come_from_its_record():
    """docs/decoding.md holds the benchmark's tables as benchmarks/fast_decoding.py renders its committed numbers."""
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks import their shared helpers as `common`
    try:
        module = importlib.import_module("fast_decoding")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    record = json.loads((DOCS / "decoding" / "benchmark" / "fast_decoding.json").read_text())
    text = (DOCS / "decoding.md").read_text()
    for gen, sections in record["lengths"].items():
        for name in ("trained model, greedy", "trained model, sampled"):
            assert module.table(sections[name], greedy="greedy" in name) in text, f"{gen} {name}"
    assert module.table(record["lengths"]["256"]["random weights, greedy"], greedy=True) in text


def _gains(summary: dict) -> list[float]:
    """The small-h arms' gain (c = 1, c*) in held-out sampled reward over the base, in pooled standard deviations
    sqrt((s_base^2 + s_arm^2) / 2)."""
    base, gains = summary["base"]["sampled_reward"], []
    for arm in ("small-h c=1", "small-h c=adaptive"):
        mean = summary[arm]["sampled_reward"]
        gains.append((mean["mean"] - base["mean"]) / ((base["std"] ** 2 + mean["std"] ** 2) / 2) ** 0.5)
    return gains


def test_main_job_gain_in_pooled_standard_deviations():
    """The README states the small-h arms' gains in pooled standard deviations for the record and its rerun (the
    main job's target: more than three, with TV to rho_24 at most 0.5); recompute them."""
    text = " ".join((ROOT / "README.md").read_text().split())
    (record_c1, record_adaptive), (rerun_c1, rerun_adaptive) = gains = [
        _gains(_summary(DOCS / "maze-study" / name / "results.json", maze.summarize)) for name in ("", "rerun")
    ]
    assert f"(c = 1; {record_c1:.1f} pooled standard deviations)" in text
    assert f"(c*; {record_adaptive:.1f} pooled standard deviations)" in text
    assert f"({rerun_c1:.1f} and {rerun_adaptive:.1f} pooled standard deviations)" in text
    for name, record_gains in zip(("", "rerun"), gains, strict=True):
        results = json.loads((DOCS / "maze-study" / name / "results.json").read_text())
        assert min(record_gains) > 3
        assert min(run["results"]["base"]["success"] for run in results["runs"]) > 0.5  # "every base ... half"
        tv = max(results["summary"][arm]["tv_to_target"]["mean"] for arm in ("small-h c=1", "small-h c=adaptive"))
        assert tv <= 0.5


def test_small_h_success_range_of_the_hidden_128_and_96_runs():
    """docs/fit.md gives the range of held-out success that the small-h arms of the 1000-step-base runs reach."""
    means = []
    for trial in ("a24-h12-s64-lr6e-4-b128", "a24-h12-w96-t280", "fixed-bases-lr1e-3", "fixed-bases-b256"):
        summary = _summary(DOCS / "maze-study" / "trials" / trial / "results.json", maze.summarize)
        means += [row["success"]["mean"] for arm, row in summary.items() if arm.startswith("small-h")]
    text = " ".join((ROOT / "docs" / "fit.md").read_text().split())
    assert f"stop at a success of {min(means):.2f}-{max(means):.2f}" in text
