"""The evaluation harness behind ``dtm eval``: greedy SAR decoding of a task's test prompts at several generation
lengths, per-sample JSONL, and an accuracy table that names every setting it came from.

Accuracy is the task's evaluation metric (``task.score`` where defined, else exact correctness): Sudoku counts correct
empty cells over empty cells, as in the DTM paper (arXiv 2604.18739); the other tasks count correct answers. Samples are
written batch by batch, so an interrupted evaluation resumes from its JSONL files and gives the same numbers as an
uninterrupted one: batch b is decoded with a generator seeded by (seed, b), whatever ran before it.

Samples are reused only when they came from the same model, data and settings: the output folder records the settings
(``eval_config.yaml``), a SHA-256 of every file of the model folder and the adapter folder, and a SHA-256 of each
length's prompts (token ids, attention mask and metadata) in ``eval_fingerprint.json``. Anything else is refused with
a message naming what changed (``overwrite=True`` recomputes from scratch instead).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from dtm.config import check, save_config, to_dict
from dtm.config.evaluation import EvalConfig
from dtm.config.loader import config_differences
from dtm.diffusion.sampler import DecodeStats
from dtm.memory_plan import ModelShape
from dtm.models.base import DiffusionLM
from dtm.models.loading import load_tokenizer, load_with_options, model_mask_token_id
from dtm.rollouts import rollout
from dtm.tasks import TokenTask, build_task
from dtm.tasks.base import PromptBatch
from dtm.tasks.tokenized import TokenizedTextTask

CONFIG_FILE = "eval_config.yaml"
FINGERPRINT_FILE = "eval_fingerprint.json"


def resolve_adapter(path: str | Path) -> Path:
    """The folder holding ``adapter_config.json``: ``path`` itself or its only adapter subfolder (peft saves named
    adapters, like DTM's ``student``, one level down)."""
    path = Path(path)
    if (path / "adapter_config.json").is_file():
        return path
    found = sorted(p.parent for p in path.glob("*/adapter_config.json"))
    if len(found) == 1:
        return found[0]
    detail = "several adapters: " + ", ".join(p.name for p in found) if found else "no adapter_config.json"
    raise FileNotFoundError(f"adapter {path}: {detail}")


def load_for_eval(cfg: EvalConfig, tokenizer: Any) -> DiffusionLM:
    """The model (with its LoRA adapter, if any), on the GPU when there is one."""
    model = load_with_options(cfg.model, cfg.load, tokenizer)
    if cfg.adapter:
        from peft import PeftModel

        peft = PeftModel.from_pretrained(model.model, str(resolve_adapter(cfg.adapter)))
        model = DiffusionLM(peft, model.mask_token_id, model.shift_logits)
    if torch.cuda.is_available() and not cfg.load.load_in_4bit:
        model = model.to("cuda")
    return model.eval()


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Complete records of a samples file; a torn last line (an interrupted write) is dropped from the file."""
    if not path.is_file():
        return []
    records, good_bytes = [], 0
    with path.open("rb") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
            good_bytes += len(line)
    with path.open("rb+") as f:
        f.truncate(good_bytes)
    return records


def files_digest(folders: list[Path]) -> str:
    """SHA-256 over every file of ``folders`` (relative paths and contents, in a fixed order)."""
    digest = hashlib.sha256()
    for index, folder in enumerate(folders):
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(f"{index}:{file.relative_to(folder).as_posix()}\0".encode())
            with file.open("rb") as f:
                digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def model_fingerprint(cfg: EvalConfig) -> str:
    """The hash of the evaluated model: every file of the model folder and of the adapter folder, if any."""
    folders = [Path(cfg.model)] + ([resolve_adapter(cfg.adapter)] if cfg.adapter else [])
    return files_digest(folders)


def data_fingerprint(prompts: PromptBatch) -> str:
    """The hash of the evaluated prompts: token ids, attention mask and metadata."""
    digest = hashlib.sha256()
    for tensor in (prompts.ids, prompts.attention_mask):
        digest.update(json.dumps(tensor.tolist()).encode())
    digest.update(json.dumps(prompts.meta, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _write_fingerprint(out: Path, fingerprint: dict[str, Any]) -> None:
    tmp = out / f".{FINGERPRINT_FILE}.tmp"
    tmp.write_text(json.dumps(fingerprint, indent=2))
    tmp.replace(out / FINGERPRINT_FILE)


def _refuse(out: Path, what: str) -> FileExistsError:
    return FileExistsError(
        f"{out} holds samples of {what}; they cannot be reused. Use --overwrite to recompute them, or another "
        "--output-dir"
    )


def prepare_output(cfg: EvalConfig, overwrite: bool, model_hash: str) -> tuple[Path, dict[str, Any]]:
    """Create the output folder; one with samples is resumed only if it holds the same settings and model. Returns the
    folder and its fingerprint (``{"model": hash, "data": {gen_length: hash}}``)."""
    out = Path(cfg.output_dir)
    saved = out / CONFIG_FILE
    fingerprint: dict[str, Any] = {"model": model_hash, "data": {}}
    if not overwrite and any(out.glob("samples-len*.jsonl")):  # without samples, there is nothing to reuse
        import yaml

        previous = (yaml.safe_load(saved.read_text()) if saved.is_file() else None) or {}
        differ = config_differences(previous, json.loads(json.dumps(to_dict(cfg))))
        if differ:
            raise FileExistsError(
                f"{out} holds an evaluation with other settings ({'; '.join(differ)}); use --overwrite or another "
                "--output-dir"
            )
        path = out / FINGERPRINT_FILE
        stored = json.loads(path.read_text()) if path.is_file() else {}
        if stored.get("model") != model_hash:
            what = "another model (its weight or adapter files differ)" if stored else "an unrecorded model"
            raise _refuse(out, what)
        fingerprint["data"] = stored.get("data", {})
    elif out.exists() and overwrite:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, saved)
    _write_fingerprint(out, fingerprint)
    return out, fingerprint


def prompt_text(task: TokenTask, ids: torch.Tensor, mask: torch.Tensor, meta: dict[str, Any]) -> str:
    if isinstance(task, TokenizedTextTask):
        return task.prompt_text(meta)
    return task.render(ids[mask.bool()].tolist())


def decoding_flops(model: DiffusionLM, stats: DecodeStats) -> torch.Tensor | None:
    """Model FLOPs of each row's decoding (``[B]`` float64), or None when the model's config does not give the shape
    (e.g. a remote-code config with other field names)."""
    try:
        shape = ModelShape.from_hf_config(model.config)
    except AttributeError:
        return None
    return shape.forward_flops(stats.tokens.double(), stats.attention_pairs.double(), stats.head_positions.double())


def evaluate_length(
    cfg: EvalConfig,
    model: DiffusionLM,
    task: TokenTask,
    prompts: PromptBatch,
    out: Path,
    progress: bool,
    fingerprint: dict[str, Any],
) -> tuple[list[dict[str, Any]], int]:
    """Decode and score every prompt at the task's generation length; return all sample records (reused ones too)
    and the number reused from an earlier run. Samples are reused only for the prompts they were written for."""
    gen_length = task.gen_length
    sampling = cfg.sampling(gen_length)
    path = out / f"samples-len{gen_length}.jsonl"
    records = read_samples(path)
    done = len(records)
    data_hash = data_fingerprint(prompts)
    if done and fingerprint["data"].get(str(gen_length)) != data_hash:
        raise _refuse(out, f"other prompts at length {gen_length} (the task's data or tokenizer changed)")
    fingerprint["data"][str(gen_length)] = data_hash
    _write_fingerprint(out, fingerprint)
    device = next(model.parameters()).device
    bar = tqdm(total=len(prompts), initial=done, desc=f"eval len {gen_length}", disable=not progress)
    with path.open("a") as f:
        for start in range(done - done % cfg.decode_batch, len(prompts), cfg.decode_batch):
            batch = prompts.select(range(start, min(start + cfg.decode_batch, len(prompts))))
            generator = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + start // cfg.decode_batch)
            stats = DecodeStats.zeros(len(batch))
            responses = rollout(model, batch, sampling, generator, stats=stats)
            flops = decoding_flops(model, stats)
            scores = task.score(responses, batch.meta) if hasattr(task, "score") else None
            rewards = task.reward(responses, batch.meta)
            correct = task.is_correct(responses, batch.meta)
            for i in range(len(batch)):
                if start + i < done:
                    continue  # written before the interruption
                completion = task.render(responses[i].tolist())
                record = {
                    "index": start + i,
                    "id": batch.meta[i].get("id", start + i),
                    "prompt": prompt_text(task, batch.ids[i], batch.attention_mask[i], batch.meta[i]),
                    "completion": completion,
                    "answer": task.extract_answer(completion) if hasattr(task, "extract_answer") else completion,
                    "reward": float(rewards[i]),
                    "correct": bool(correct[i]),
                    "score": float(scores[i]) if scores is not None else float(correct[i]),
                    "forward_passes": int(stats.passes[i]),
                    "forward_tokens": int(stats.tokens[i]),
                    "forward_flops": None if flops is None else float(flops[i]),
                }
                f.write(json.dumps(record) + "\n")
                records.append(record)
            f.flush()
            os.fsync(f.fileno())
            bar.update(len(batch) - max(0, done - start))
    bar.close()
    return records, done


def summarize(cfg: EvalConfig, gen_length: int, records: list[dict[str, Any]], reused: int) -> dict[str, Any]:
    """One row of the results table: the decoding settings, accuracy and reward, and the forward passes and tokens
    that decoding a sample cost (means over the samples that recorded them)."""
    n = len(records)
    costs = [r for r in records if "forward_passes" in r]
    return {
        "task": cfg.task,
        "style": cfg.task_options.get("style", "reasoning") if cfg.task not in _token_tasks() else "-",
        "gen_length": gen_length,
        "steps": cfg.decode_steps_for(gen_length),
        "block_length": cfg.block_length,
        "temperature": cfg.temperature,
        "remasking": cfg.remasking,
        "threshold": cfg.threshold,
        "cache": cfg.cache,
        "cache_refresh": cfg.cache_refresh,
        "checkpoint": cfg.model + (f" + {cfg.adapter}" if cfg.adapter else ""),
        "split": cfg.split,
        "n": n,
        "accuracy": 100 * sum(r["score"] for r in records) / n,
        "exact": 100 * sum(r["correct"] for r in records) / n,
        "reward": sum(r["reward"] for r in records) / n,
        "passes_per_sample": sum(r["forward_passes"] for r in costs) / len(costs) if costs else None,
        "tokens_per_sample": sum(r["forward_tokens"] for r in costs) / len(costs) if costs else None,
        "flops_per_sample": _mean_flops(costs),
        "reused": reused,
    }


def _mean_flops(records: list[dict[str, Any]]) -> float | None:
    flops = [r.get("forward_flops") for r in records]
    if not flops or any(f is None for f in flops):
        return None
    return sum(flops) / len(flops)


def decoding_label(row: dict[str, Any]) -> str:
    """The decoding options of a results row in a few characters: ``fixed`` or ``tau=0.9``, then the cache and its
    refresh interval (``dual/4``; ``/0`` refreshes at block starts only)."""
    rounds = "fixed" if row.get("threshold") is None else f"tau={row['threshold']}"
    cache = row.get("cache", "none")
    return rounds if cache == "none" else f"{rounds}, {cache}/{row.get('cache_refresh', 0)}"


def _token_tasks() -> set[str]:
    from dtm.tasks import TASKS

    return set(TASKS)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| task | style | length | steps | block | remasking | temperature | decoding | checkpoint | n | accuracy % | "
        "exact % | mean reward | passes / sample | tokens / sample | FLOPs / sample |"
    )
    lines = [head, "|---|---|---:|---:|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cost = [f"{r[k]:.1f}" if r.get(k) is not None else "-" for k in ("passes_per_sample", "tokens_per_sample")]
        cost.append(f"{r['flops_per_sample']:.3g}" if r.get("flops_per_sample") is not None else "-")
        steps = r["steps"] if r.get("threshold") is None else "adaptive"
        lines.append(
            f"| {r['task']} | {r['style']} | {r['gen_length']} | {steps} | {r['block_length']} | "
            f"{r['remasking']} | {r['temperature']} | {decoding_label(r)} | "
            f"{r['checkpoint']} | {r['n']} | {r['accuracy']:.1f} | {r['exact']:.1f} | {r['reward']:.3f} | "
            f"{cost[0]} | {cost[1]} | {cost[2]} |"
        )
    return "\n".join(lines)


def run_eval(cfg: EvalConfig, *, overwrite: bool = False, progress: bool = True) -> list[dict[str, Any]]:
    """Evaluate at every generation length; write samples, ``results.json`` and ``results.md``; return the rows (with
    ``reused``: the samples of each length taken from an earlier run of the same model, data and settings).

    The model folder, the task's data and the output folder are all checked before the weights are loaded."""
    check(Path(cfg.model, "config.json").is_file(), "model", f"no model checkpoint (config.json) at {cfg.model}")
    tokenizer = load_tokenizer(cfg.model, cfg.load.trust_remote_code)
    mask_token_id = model_mask_token_id(cfg.model, tokenizer, cfg.load)
    tasks, prompts = {}, {}
    for gen_length in cfg.gen_lengths:
        tasks[gen_length] = build_task(
            cfg.task,
            cfg.task_options,
            tokenizer=tokenizer,
            gen_length=gen_length,
            mask_token_id=mask_token_id,
            max_prompt_length=cfg.max_prompt_length,
            truncation=cfg.prompt_truncation,
        )
        check(
            tasks[gen_length].gen_length == gen_length,
            "gen_lengths",
            f"task {cfg.task} has a fixed response length {tasks[gen_length].gen_length}, got {gen_length}",
        )
        prompts[gen_length] = tasks[gen_length].prompts(cfg.num_examples, split=cfg.split, seed=cfg.seed)
    out, fingerprint = prepare_output(cfg, overwrite, model_fingerprint(cfg))
    model = load_for_eval(cfg, tokenizer)
    rows = []
    for gen_length in cfg.gen_lengths:
        task = tasks[gen_length]
        records, reused = evaluate_length(cfg, model, task, prompts[gen_length], out, progress, fingerprint)
        rows.append(summarize(cfg, gen_length, records, reused))
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    (out / "results.md").write_text(markdown_table(rows) + "\n")
    return rows
