"""Every shipped config loads and validates (before any model is loaded), and the LLaDA configs carry the paper's
published settings of the paper."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from dtm.config import load_config
from dtm.config.sft import SFTConfig
from dtm.studies.compare import CompareConfig, base_models, run_configs
from dtm.studies.decoding import DecodingStudyConfig
from dtm.studies.fit import FitStudyConfig
from dtm.studies.maze import MazeStudyConfig, arms
from dtm.training import load_train_config
from dtm.training.dtm import DTMConfig
from dtm.training.pretrain import PretrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
KINDS = {
    "pretrain": PretrainConfig,
    "sft": SFTConfig,
    "maze-study": MazeStudyConfig,
    "compare": CompareConfig,
    "fit": FitStudyConfig,
    "decoding-study": DecodingStudyConfig,
}
SHIPPED = sorted(p for p in CONFIGS.rglob("*.yaml") if "accelerate" not in p.parts)


@pytest.mark.parametrize("path", SHIPPED, ids=str)
def test_config_loads_and_validates(path):
    kind = next((cls for prefix, cls in KINDS.items() if path.name.startswith(prefix)), None)
    cfg = load_config(kind, path) if kind else load_train_config(path)
    assert cfg is not None
    if kind is MazeStudyConfig:
        assert all(arms(cfg, Path("unused"), seed) for seed in cfg.seeds)
    if kind is FitStudyConfig:
        assert all(cfg.dtm_config(v, 0, "unused", "unused") for v in cfg.variant_names)


@pytest.mark.parametrize("path", [p for p in SHIPPED if p.name.startswith("compare")], ids=str)
def test_comparison_configs_give_every_run_the_same_budget(path, tmp_path):
    cfg = load_config(CompareConfig, path)
    runs = run_configs(cfg, base_models(cfg, tmp_path), tmp_path).values()
    assert len(runs) == len(cfg.methods) * len(cfg.seeds) >= 4 * 3
    assert len({run.planned_rollouts for run in runs}) == 1
    assert len({(run.sampling.gen_length, run.sampling.decode_steps, run.sampling.temperature) for run in runs}) == 1


# name -> (h, a_end, steps_per_h, c, prompts x completions, refresh, temperature, micro x accum, ema, lr, lr_min, clip)
PAPER = {
    "countdown": (6, 100, 1200, 1.0, (40, 6), (10, 25), 1.0, (12, 8), 0.95, 4e-6, 2e-6, 2.0),
    "sudoku": (5, 100, 256, 1.0, (80, 1), (20, 32), 0.0, (4, 16), 0.0, 3e-6, 1e-6, 1.0),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_llada_configs_match_the_paper(name):
    cfg = load_config(DTMConfig, CONFIGS / "llada" / f"{name}.yaml")
    got = (
        cfg.h,
        cfg.a_end,
        cfg.steps_per_h,
        cfg.control_variate,
        (cfg.buffer_prompts, cfg.buffer_completions),
        (cfg.refresh_prompts, cfg.refresh_every),
        cfg.sampling.temperature,
        (cfg.micro_batch, cfg.grad_accum),
        cfg.ema,
        cfg.lr,
        cfg.lr_min,
        cfg.grad_clip,
    )
    assert got == PAPER[name]
    assert cfg.task == name and cfg.load.mask_token_id == 126336 and cfg.load.load_in_4bit
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.finetune) == (128, 64, 0.05, "lora")
    assert (cfg.sampling.gen_length, cfg.sampling.block_length, cfg.sampling.decode_steps) == (256, 32, 128)
    assert (cfg.betas, cfg.eps, cfg.weight_decay, cfg.lr_warmup, cfg.lr_decay) == ((0.9, 0.99), 1e-8, 0.1, 0.05, 0.1)


# The likelihood-free peers' LLaDA configs carry their authors' public settings beside DTM's model, task and sampler.
PEERS = {
    "dmpo": dict(
        num_generations=16, inner_updates=8, alpha=0.04, baseline="negative", baseline_strength=1.0, mc_samples=4,
        ratio_samples=4, lr=1e-6, grad_clip=0.2, weight_decay=0.1,
    ),
    "gdsd": dict(
        num_generations=6, inner_updates=8, psi=1.0, beta=0.001, ref_sync_every=64, lr=3e-6, grad_clip=0.2,
        weight_decay=0.01,
    ),
}  # fmt: skip


@pytest.mark.parametrize("method", sorted(PEERS))
def test_llada_peer_configs_carry_the_public_settings(method):
    cfg = load_train_config(CONFIGS / "llada" / f"countdown-{method}.yaml")
    assert cfg.method == method and {key: getattr(cfg, key) for key in PEERS[method]} == PEERS[method]
    assert cfg.lr_min == cfg.lr and cfg.masking == "uniform"  # constant after warmup; masks anywhere
    dtm = load_config(DTMConfig, CONFIGS / "llada" / "countdown.yaml")
    assert (cfg.task, cfg.task_options, cfg.load) == (dtm.task, dtm.task_options, dtm.load)
    assert replace(cfg.sampling, decode_batch=1) == replace(dtm.sampling, decode_batch=1)  # chunking changes nothing
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.finetune) == (128, 64, 0.05, "lora")


def test_llada_lora_pattern_targets_block_projections_only():
    import re

    pattern = load_config(DTMConfig, CONFIGS / "llada" / "countdown.yaml").lora.target_modules
    names = [f"model.transformer.blocks.{i}.{m}" for i in (0, 31) for m in ("q_proj", "attn_out", "ff_proj", "ff_out")]
    assert all(re.fullmatch(pattern, n) for n in names)
    assert not re.fullmatch(pattern, "model.transformer.ff_out")  # LLaDA's output head shares the name
    assert not re.fullmatch(pattern, "model.transformer.blocks.0.attn_norm")


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_starts_with_the_command_that_runs_it(path):
    """Line one is ``# Run: <command>``; the command names this file (``--config`` or, for accelerate configs,
    ``--config_file``), or a script of scripts/ that reads it."""
    first = path.read_text().splitlines()[0]
    assert first.startswith("# Run: "), f"{path.name}: the first line must be '# Run: <command>'"
    words = first.removeprefix("# Run: ").split("  (")[0].split()
    own = str(path.relative_to(CONFIGS.parent))
    flag = "--config_file" if "accelerate" in path.parts else "--config"
    if flag in words:
        assert words[words.index(flag) + 1] == own, f"{own}: its Run line names another config"
    else:
        script = next(w for w in words if w.startswith("scripts/"))
        assert (CONFIGS.parent / script).is_file(), f"{own}: {script} does not exist"
