"""Summarise a run of scripts/real_model.sh: wall time of each stage, the SFT loss, the `dtm eval` rows and the DTM
run's held-out evaluation before and after training. Writes RUN_DIR/summary.json and RUN_DIR/report.md.

Usage: python scripts/real_model_report.py RUN_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from dtm.training.logging import read_metrics

EVAL_KEYS = ("eval_reward_greedy", "eval_accuracy_greedy", "eval_reward_sampled", "eval_accuracy_sampled")


def collect(run_dir: Path) -> dict[str, Any]:
    """Everything the report shows, from the run's own files."""
    times = dict(line.split("\t") for line in (run_dir / "times.tsv").read_text().splitlines())
    sft = read_metrics(run_dir / "sft" / "metrics.jsonl")
    dtm = read_metrics(run_dir / "dtm" / "metrics.jsonl")
    evals = [r for r in dtm if "eval_reward_greedy" in r]
    return {
        "seconds": {name: int(value) for name, value in times.items()},
        "sft_data": json.loads((run_dir / "sft" / "data.json").read_text()),
        "sft_loss_first": sum(r["loss"] for r in sft[:5]) / len(sft[:5]),
        "sft_loss_last": sum(r["loss"] for r in sft[-5:]) / len(sft[-5:]),
        "sft_steps": len(sft),
        "eval": [json.loads((run_dir / f"eval-{t}" / "results.json").read_text())[0] for t in ("countdown", "gsm8k")],
        "dtm_before": {k: evals[0][k] for k in EVAL_KEYS},
        "dtm_after": {k: evals[-1][k] for k in EVAL_KEYS},
        "dtm_steps": sum("loss" in r for r in dtm),
    }


def table(summary: dict[str, Any]) -> str:
    """The report's table: one row per measurement."""
    rows = [
        "| stage | what it measures | result | wall time (s) |",
        "|---|---|---|---:|",
        f"| convert | GGUF -> masked diffusion folder | - | {summary['seconds']['convert']} |",
        f"| sft | masked-diffusion loss, mean of the first / last 5 of {summary['sft_steps']} steps | "
        f"{summary['sft_loss_first']:.3f} -> {summary['sft_loss_last']:.3f} | {summary['seconds']['sft']} |",
    ]
    for row in summary["eval"]:
        rows.append(
            f"| eval {row['task']} | accuracy % / mean reward, {row['n']} test prompts, greedy, length "
            f"{row['gen_length']}, {row['steps']} steps | {row['accuracy']:.1f} / {row['reward']:.3f} | "
            f"{summary['seconds']['eval-' + row['task']]} |"
        )
    before, after = summary["dtm_before"], summary["dtm_after"]
    rows.append(
        f"| dtm (LoRA) | held-out greedy reward before -> after {summary['dtm_steps']} steps | "
        f"{before['eval_reward_greedy']:.3f} -> {after['eval_reward_greedy']:.3f} | {summary['seconds']['dtm']} |"
    )
    rows.append(f"| total | | | {sum(summary['seconds'].values())} |")
    return "\n".join(rows)


def main(run_dir: Path) -> None:
    summary = collect(run_dir)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (run_dir / "report.md").write_text(table(summary) + "\n")
    print(table(summary))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
