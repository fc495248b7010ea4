"""The decoding study: every decoder beside the exact sampler on the same prompts, per seed, with exact laws on mazes.

A decoder that is the exact sampler in disguise (threshold 1: one token per round) must show TV 0 and the exact
sampler's greedy numbers; a low threshold must take fewer passes. (How far a cache moves the law is tested on exact
laws in tests/test_exact.py: these random models put almost all their mass on invalid paths, where TV is blind.)"""

from __future__ import annotations

import json

import pytest
import torch

from dtm.config import ConfigError
from dtm.models import TinyModelConfig, build_tiny_model, save_model
from dtm.studies.decoding import (
    BUFFER_COLUMNS,
    DecodingStudyConfig,
    buffer_summary,
    buffer_table,
    run_decoding_study,
)
from dtm.tasks.maze import MazeTask


@pytest.fixture(scope="module")
def maze_models(tmp_path_factory):
    """Random-weight maze models for seeds 0 and 1, with context-dependent outputs."""
    root = tmp_path_factory.mktemp("maze")
    vocab = MazeTask(size=3, extra_openings=3, gen_length=8).vocab_size
    for seed in (0, 1):
        torch.manual_seed(seed)
        cfg = TinyModelConfig(vocab_size=vocab, mask_token_id=1, hidden_size=32, num_layers=2, num_heads=4)
        model = build_tiny_model(cfg)
        with torch.no_grad():
            for param in model.parameters():
                if param.dim() == 2:
                    param.normal_(0.0, 0.2)
        save_model(model, root / f"seed{seed}")
    return root


def study(tmp_path, maze_models, **changes) -> DecodingStudyConfig:
    values = dict(
        output_dir=str(tmp_path / "study"),
        seeds=[0, 1],
        models={
            "maze": {
                "task": "maze",
                "task_options": {"size": 3, "extra_openings": 3, "gen_length": 8},
                "path": str(maze_models / "seed{seed}"),
                "sampling": {"gen_length": 8, "block_length": 4, "decode_steps": 8, "remasking": "random"},
            }
        },
        decoders={"one per round": {"threshold": 1.0}, "dual": {"cache": "dual"}, "tau 0.3": {"threshold": 0.3}},
        eval_prompts=16,
        tv_mazes=3,
    )
    return DecodingStudyConfig(**(values | changes))


def test_study_measures_every_decoder_against_the_exact_sampler(tmp_path, maze_models):
    summary = run_decoding_study(study(tmp_path, maze_models))
    rows = summary["maze"]
    assert list(rows) == ["exact", "one per round", "dual", "tau 0.3"]
    exact, same = rows["exact"], rows["one per round"]
    assert same["tv_to_exact"]["mean"] == pytest.approx(0.0, abs=1e-12)
    for key in ("greedy_accuracy", "greedy_reward", "greedy_passes"):
        assert same[key] == exact[key]
    for decoder in rows.values():
        assert decoder["accuracy_change"]["mean"] == pytest.approx(
            decoder["greedy_accuracy"]["mean"] - exact["greedy_accuracy"]["mean"]
        )
    assert same["accuracy_change"]["mean"] == same["reward_change"]["mean"] == 0
    assert exact["greedy_passes"]["mean"] == 8 and exact["sampled_passes"]["mean"] == 8
    assert rows["dual"]["greedy_passes"]["mean"] == 8 and rows["dual"]["tv_to_exact"]["mean"] >= 0
    assert rows["tau 0.3"]["sampled_passes"]["mean"] < 8  # several tokens per round
    out = tmp_path / "study"
    saved = json.loads((out / "results.json").read_text())
    assert [run["seed"] for run in saved["runs"]] == [0, 1] and saved["summary"] == json.loads(json.dumps(summary))
    report = (out / "report.md").read_text()
    assert "## maze" in report and "| one per round | " in report and "TV to the exact law" in report


def test_study_settings_are_checked_before_anything_runs(tmp_path, maze_models):
    with pytest.raises(ConfigError, match=r"decoders\.bad: unknown keys \['temperature'\]"):
        study(tmp_path, maze_models, decoders={"bad": {"temperature": 0.5}})
    with pytest.raises(ConfigError, match=r"decoders\.far \(with models\.maze\.sampling\): .*cache_refresh"):
        study(tmp_path, maze_models, decoders={"far": {"cache": "dual", "cache_refresh": 9}})
    with pytest.raises(ConfigError, match="'exact' names the reference row"):
        study(tmp_path, maze_models, decoders={"exact": {"threshold": 0.5}})
    missing = study(tmp_path, maze_models, seeds=[0, 5])
    with pytest.raises(ConfigError, match=r"models\.maze\.path: no model checkpoint at .*seed5"):
        run_decoding_study(missing)
    assert not (tmp_path / "study").exists()


def test_buffer_summary_pairs_each_decoder_with_the_exact_rollouts_of_the_same_seed():
    def runs(shift: float) -> list[dict]:
        out = []
        for seed in (0, 1):
            row = {key: 0.1 * seed + shift for key, _ in BUFFER_COLUMNS}
            out.append({"seed": seed, "results": {"base": {}, "small-h c=1": row}})
        return out

    summary = buffer_summary({"exact": runs(0.0), "threshold 0.9": runs(0.02)})
    assert list(summary) == ["exact", "threshold 0.9"] and list(summary["exact"]) == ["small-h c=1"]
    fast = summary["threshold 0.9"]["small-h c=1"]
    assert fast["tv_change"]["mean"] == pytest.approx(0.02) and fast["tv_change"]["std"] == pytest.approx(0.0)
    assert fast["tv_to_target"]["std"] == pytest.approx(0.1 / 2**0.5)  # the seed spread, which pairing removes
    assert summary["exact"]["small-h c=1"]["reward_change"]["mean"] == 0
    lines = buffer_table(summary, "small-h c=1").splitlines()
    assert lines[0].startswith("| rollouts decoded by | exact reward | change vs exact rollouts | TV to rho_a |")
    assert lines[3].startswith("| threshold 0.9 | 0.070 ± 0.071 | 0.020 ± 0.000 |") and lines[3].endswith("| 0 ± 0 |")
