"""One table from several comparisons (``dtm merge``): runs of ``dtm study compare`` made separately on the same base
models, task, sampler and held-out prompts (e.g. DTM against the RL baselines, then against DMPO and GDSD) joined
into one results.json, report and figure.

A (budget, method, seed) that several comparisons hold (the base models, or DTM rerun as the compute budget's
reference) must have the same metrics in each (wall time aside: it depends on what else ran on the machine); the
first comparison's row is kept. Anything else is an error, so a merged table never mixes different runs of a method.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dtm.config import load_config
from dtm.config.sampling import SamplingConfig
from dtm.studies.compare import CompareConfig, summarize, write_report

# What the comparisons must share for their rows to be comparable.
SHARED_KEYS = ("task", "task_options", "base_model", "seeds", "eval_prompts", "eval_samples")
# Row keys that may differ between two runs of the same (budget, method, seed).
TIMING_KEYS = ("wall_time",)


def read_comparison(folder: Path) -> tuple[CompareConfig, dict[str, Any]]:
    """A comparison folder's settings (``compare.yaml``) and results (``results.json``)."""
    for name in ("compare.yaml", "results.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: not found (give folders written by `dtm study compare`)")
    return load_config(CompareConfig, folder / "compare.yaml"), json.loads((folder / "results.json").read_text())


def check_comparable(configs: Sequence[CompareConfig], folders: Sequence[Path]) -> None:
    """Raise ValueError naming the first setting on which a comparison differs from the first one."""
    first = configs[0]
    for cfg, folder in zip(configs[1:], folders[1:], strict=True):
        for key in SHARED_KEYS:
            if getattr(cfg, key) != getattr(first, key):
                raise ValueError(
                    f"{folder}: {key} is {getattr(cfg, key)!r}, but {getattr(first, key)!r} in {folders[0]}; "
                    "only comparisons on the same bases and held-out prompts can be merged"
                )
        sampling, first_sampling = (load_config(SamplingConfig, c.shared.get("sampling", {})) for c in (cfg, first))
        if sampling != first_sampling:
            raise ValueError(f"{folder}: shared.sampling is {sampling!r}, but {first_sampling!r} in {folders[0]}")


def merge_results(results: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """The runs of every comparison, each (budget, method, seed) once, with their summary and held-out curves
    (per budget and method, the first comparison's). ``names`` label the comparisons in errors."""
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    source: dict[tuple[str, str, int], str] = {}
    for result, name in zip(results, names, strict=True):
        for row in result["runs"]:
            key = (row["budget"], row["method"], row["seed"])
            if key not in rows:
                rows[key], source[key] = row, name
                continue
            for metric, value in row.items():
                if metric not in TIMING_KEYS and rows[key].get(metric) != value:
                    raise ValueError(
                        f"{name}: {metric} of {key[1]} (budget {key[0]}, seed {key[2]}) is {value}, but "
                        f"{rows[key].get(metric)} in {source[key]}: not the same run"
                    )
    curves: dict[str, dict[str, Any]] = {}
    for result in results:
        for budget, methods in result["curves"].items():
            for method, runs in methods.items():
                curves.setdefault(budget, {}).setdefault(method, runs)
    runs = list(rows.values())
    return {"runs": runs, "summary": summarize(runs), "curves": curves}


def merge_comparisons(folders: Sequence[Path], out: Path) -> dict[str, Any]:
    """Merge the comparison ``folders`` into ``out`` (results.json, which also lists the folders as ``sources``,
    report.md, reward_vs_rollouts.png); return the merged results."""
    read = [read_comparison(Path(folder)) for folder in folders]
    configs = [cfg for cfg, _ in read]
    check_comparable(configs, [Path(f) for f in folders])
    merged = merge_results([result for _, result in read], [str(f) for f in folders])
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(merged | {"sources": [str(f) for f in folders]}, indent=2))
    intro = (
        "Merged by `dtm merge` from " + ", ".join(f"`{f}`" for f in folders) + " (same base models, task, sampler "
        f"and held-out prompts; the runs two of them share are identical). Mean ± std over seeds {configs[0].seeds}."
    )
    write_report(out, f"{configs[0].task}: every method", intro, merged["summary"], merged["curves"], configs[0].task)
    return merged
