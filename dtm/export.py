"""``dtm export``: a finished training run as a folder another user can load, with a model card.

The folder holds the trained weights (the merged model, or with ``adapter=True`` the LoRA adapter alone, whose card
names the base model it applies to), the base model's tokenizer when it has one, the run's config
(``training_config.yaml``, which ``dtm train --config`` reruns) and ``README.md``: a model card (Hugging Face format,
YAML metadata written by ``huggingface_hub``) with the base model, the method and its settings, the data, the
held-out evaluation of the run before and after training with its decoding settings, any ``dtm eval`` results given,
and the commands that load and reproduce it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from dtm.config import load_config, save_config
from dtm.config.evaluation import EvalConfig
from dtm.config.run import RunConfig
from dtm.evaluation import CONFIG_FILE as EVAL_CONFIG_FILE
from dtm.evaluation import resolve_adapter
from dtm.methods import METHODS
from dtm.models.loading import has_tokenizer, load_tokenizer
from dtm.training import checkpoint as ckpt
from dtm.training import load_train_config
from dtm.training.logging import read_metrics
from dtm.training.run_dir import check_run_dir, prepare_run_dir

EVAL_COLUMNS = (
    ("eval_reward_greedy", "greedy reward"),
    ("eval_accuracy_greedy", "greedy accuracy"),
    ("eval_reward_sampled", "sampled reward"),
    ("eval_accuracy_sampled", "sampled accuracy"),
)


def check_export(run_dir: Path, out_dir: Path, adapter: bool, evals: Sequence[Path], overwrite: bool) -> RunConfig:
    """Every input and the output folder checked before anything is copied; returns the run's config."""
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir / 'config.yaml'}: not found (give a folder written by `dtm train`)")
    cfg = load_train_config(run_dir / "config.yaml")
    part = "adapter" if adapter else "model"
    if adapter and cfg.finetune != "lora":
        raise ValueError(f"--adapter: the run at {run_dir} trained every weight (finetune: full); it has no adapter")
    if not (run_dir / "final" / part).is_dir():
        raise FileNotFoundError(
            f"{run_dir / 'final' / part}: not found; the run has not finished (`dtm train` writes final/ at the end; "
            "continue it with `dtm train --config CONFIG --resume`)"
        )
    for folder in evals:
        for name in ("results.md", EVAL_CONFIG_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"--eval: {folder / name} not found (give an output folder of `dtm eval`)")
    check_run_dir(out_dir, overwrite=overwrite, resumable=False)
    return cfg


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    adapter: bool = False,
    evals: Sequence[str | Path] = (),
    overwrite: bool = False,
) -> Path:
    """Write the export folder of the finished run ``run_dir`` to ``out_dir`` (see the module docstring) and return
    it. ``evals``: output folders of ``dtm eval`` whose result tables go into the card."""
    run_dir, out_dir, evals = Path(run_dir), Path(out_dir), [Path(e) for e in evals]
    cfg = check_export(run_dir, out_dir, adapter, evals, overwrite)
    prepare_run_dir(out_dir, overwrite=overwrite, resumable=False)
    source = resolve_adapter(run_dir / "final" / "adapter") if adapter else run_dir / "final" / "model"
    shutil.copytree(source, out_dir, dirs_exist_ok=True)
    if not has_tokenizer(out_dir):  # runs saved before final/ held the tokenizer
        tokenizer = load_tokenizer(cfg.base_model, cfg.load.trust_remote_code)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(out_dir))
    save_config(cfg, out_dir / "training_config.yaml")
    card = model_card(cfg, run_dir, out_dir, adapter, evals)
    card.save(str(out_dir / "README.md"))
    return out_dir


def model_card(cfg: RunConfig, run_dir: Path, out_dir: Path, adapter: bool, evals: Sequence[Path]) -> ModelCard:
    """The card of an exported run."""
    title = METHODS[cfg.method].title
    local_base = Path(cfg.base_model).exists()
    data = ModelCardData(
        library_name="peft" if adapter else "transformers",
        base_model=None if local_base else cfg.base_model,
        tags=["dtm", "masked-diffusion", "diffusion-language-model", cfg.method],
    )
    base = f"`{cfg.base_model}`" + (" (a local folder)" if local_base else "")
    records = read_metrics(run_dir / "metrics.jsonl")
    evaluation = _training_eval(cfg, records)
    for folder in evals:
        settings = load_config(EvalConfig, folder / EVAL_CONFIG_FILE)
        evaluation += [
            "",
            f"`dtm eval` on {settings.task} ({settings.split} split, temperature {settings.temperature}, "
            f"remasking {settings.remasking}):",
            "",
            (folder / "results.md").read_text().strip(),
        ]
    if adapter:
        load = [
            "```bash",
            f"dtm eval --model {cfg.base_model} --adapter {out_dir.name} --task {cfg.task}",
            "```",
            "",
            f"The folder is a LoRA adapter (peft) of the base model {base}; apply it with "
            "`peft.PeftModel.from_pretrained(base, folder)`.",
        ]
    else:
        load = [
            "```python",
            "from dtm import load_model",
            "",
            f'model = load_model("{out_dir.name}")  # a DiffusionLM: logits of a masked diffusion LM',
            "```",
        ]
    body = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# {out_dir.name}",
        "",
        f"A masked diffusion language model fine-tuned from {base} with {title}, by the `dtm` library.",
        "",
        "## Training",
        "",
        f"- **Base model:** {base}",
        f"- **Method:** {title} (`method: {cfg.method}`), "
        + ("LoRA adapters" if cfg.finetune == "lora" else "every weight trained"),
        f"- **Data:** the training split of the `{cfg.task}` task"
        + (f" with options `{json.dumps(cfg.task_options)}`" if cfg.task_options else "")
        + f", a pool of {cfg.prompt_pool} prompts; the reward is the task's own",
        f"- **Run:** {_run_summary(cfg, run_dir, records)}",
        "- **Settings:** every key in `training_config.yaml`; `dtm train --config training_config.yaml` reruns it "
        "(same seed, same numbers on the same machine)",
        "",
        "```yaml",
        (out_dir / "training_config.yaml").read_text().strip(),
        "```",
        "",
        "## Evaluation",
        "",
        *evaluation,
        "",
        "## How to load",
        "",
        *load,
        "",
    ]
    return ModelCard("\n".join(body))


def _training_eval(cfg: RunConfig, records: list[dict]) -> list[str]:
    """The run's held-out evaluation before and after training, from its ``metrics.jsonl`` ``records``."""
    evals = {r["eval"]: r for r in records if r.get("eval") in ("base", "final")}
    if not evals:
        return ["The run logged no held-out evaluation (`eval_prompts: 0`)."]
    s = cfg.sampling
    lines = [
        f"Held-out (test split) prompts of the task: {cfg.eval_prompts}, decoded with gen_length {s.gen_length}, "
        f"block_length {s.block_length}, decode_steps {s.decode_steps}, remasking {s.remasking}; greedy, and one "
        f"sample per prompt at temperature {s.temperature}.",
        "",
        "| model | " + " | ".join(title for _, title in EVAL_COLUMNS) + " |",
        "|---" * (len(EVAL_COLUMNS) + 1) + "|",
    ]
    for name, label in (("base", "base model"), ("final", "this model")):
        if name in evals:
            cells = [f"{evals[name][key]:.3f}" if key in evals[name] else "-" for key, _ in EVAL_COLUMNS]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _run_summary(cfg: RunConfig, run_dir: Path, records: list[dict]) -> str:
    """Steps, rollouts, compute and training time from the run's last checkpoint, else from its log ``records``."""
    last = ckpt.latest_checkpoint(run_dir)
    if last is not None and (last / "trainer_state.json").is_file():
        state = json.loads((last / "trainer_state.json").read_text())
    else:
        state = [r for r in records if "loss" in r][-1]
    step = state["step"]
    inner = getattr(cfg, "inner_updates", None)
    parts = [f"{step} optimizer steps" if inner is None else f"{step} rollout batches ({step * inner} optimizer steps)"]
    parts.append(f"{state.get('rollouts', 0)} rollouts")
    if "forward_tokens" in state:
        parts.append(f"{state['forward_tokens'] + 2 * state['backward_tokens']:,} forward-token equivalents")
    if "wall_time" in state:
        parts.append(f"{state['wall_time']:.0f} s of training")
    return ", ".join(parts)


def push_to_hub(folder: Path, repo_id: str, private: bool = False) -> str:
    """Upload ``folder`` to the Hub repository ``repo_id`` (created if missing) with huggingface_hub; returns its
    URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="Upload model exported by dtm export")
    return f"https://huggingface.co/{repo_id}"
