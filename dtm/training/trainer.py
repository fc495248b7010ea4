"""The trainer base class: the plumbing every reward fine-tuning method (DTM and the baselines) shares around its own
loop. Its settings are :class:`dtm.config.run.RunConfig`.

``Trainer`` loads the model and task, builds the accelerator, the optimiser and the (optionally LoRA) trained model,
rolls out and scores prompts, applies gradients with clipping and non-finite-step skipping, writes atomic checkpoints
and resumes from them exactly, logs JSONL metrics, evaluates and saves the final model. A method subclasses it and
writes ``train``; the hooks it may override are listed on the class.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import DistributedType, gather_object, set_seed
from peft import LoraConfig, prepare_model_for_kbit_training
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from dtm.config import check, save_config, to_dict
from dtm.config.run import RunConfig
from dtm.diffusion.sampler import DecodeStats
from dtm.errors import RunError
from dtm.heldout import eval_record
from dtm.models import save_model
from dtm.models.base import DiffusionLM, input_tokens
from dtm.models.loading import load_tokenizer, load_with_options, model_mask_token_id
from dtm.rollouts import rollout
from dtm.tasks import build_task
from dtm.tasks.base import PromptBatch, TokenTask
from dtm.training import checkpoint as ckpt
from dtm.training.accel import make_accelerator
from dtm.training.buffer import ReplayBuffer
from dtm.training.logging import MetricsLog
from dtm.training.rewards import RewardFn, RewardScorer
from dtm.training.run_dir import check_resume_settings, prepare_run_dir
from dtm.training.schedule import adamw
from dtm.training.teacher import add_lora_adapters, load_trainable_state, trainable_state

logger = logging.getLogger(__name__)

RUN_STATE_BYTES = 1_000_000
# A study's view of a run: callback(event, trainer, record) (see Trainer.train).
StepCallback = Callable[[str, "Trainer", dict[str, Any]], None]


@dataclass
class RunState:
    """Counters saved in every checkpoint (a method's state subclasses it)."""

    step: int = 0
    nonfinite_steps: int = 0
    skipped_steps: int = 0
    reward_errors: int = 0
    reward_timeouts: int = 0
    rollouts: int = 0
    eval_seconds: float = 0.0  # time spent in held-out evaluations (not training)
    # What the rollouts' decoding cost: wall time (scoring excluded), and per-response forward passes and positions
    # through the model, summed over rollouts (dtm.diffusion.sampler.DecodeStats).
    rollout_seconds: float = 0.0
    rollout_passes: int = 0
    rollout_positions: int = 0
    # Compute, machine-independent: tokens through the models' forward passes (rollouts, teacher or reference, trained
    # model; evaluations excluded) and tokens of the forward passes that were differentiated (their backward pass).
    forward_tokens: int = 0
    backward_tokens: int = 0

    @property
    def compute_tokens(self) -> int:
        """Forward-token equivalents of the run's compute: a backward pass costs about two forward passes."""
        return self.forward_tokens + 2 * self.backward_tokens


class TokenCounter:
    """A forward pre-hook that adds each model call's tokens to ``state``'s compute counters; a call made with
    gradients enabled is also counted as a backward pass. Deep copies of the hooked model (a copied teacher or
    reference) share the counter, so their calls are counted too."""

    def __init__(self) -> None:
        self.state: RunState | None = None
        self.enabled = True

    def __call__(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        if not self.enabled or self.state is None:
            return
        tokens = input_tokens(args, kwargs)
        self.state.forward_tokens += tokens
        if torch.is_grad_enabled():
            self.state.backward_tokens += tokens

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenCounter:
        return self


def tracker_config(cfg: RunConfig) -> dict[str, bool | int | float | str]:
    """The run's settings as flat scalars for a tracker's hyperparameters (``sampling.gen_length``: 8; lists and
    None as text), which every tracker accepts."""
    flat: dict[str, bool | int | float | str] = {}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                add(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            flat[prefix] = value if isinstance(value, bool | int | float | str) else str(value)

    add("", to_dict(cfg))
    return flat


def load_model_and_task(
    cfg: RunConfig, model: DiffusionLM | None = None, task: TokenTask | None = None
) -> tuple[DiffusionLM, TokenTask]:
    """The run's base model and task as ``cfg`` names them (``model`` / ``task`` when given instead): the task built
    for the model folder (a text task through its tokenizer, its data read first, so that a bad data source fails
    before the weights load), then the model from ``base_model``."""
    if task is None:
        tokenizer = load_tokenizer(cfg.base_model, cfg.load.trust_remote_code)
        mask_token_id = (
            model.mask_token_id if model is not None else model_mask_token_id(cfg.base_model, tokenizer, cfg.load)
        )
        task = build_task(
            cfg.task,
            cfg.task_options,
            tokenizer=tokenizer,
            gen_length=cfg.sampling.gen_length,
            mask_token_id=mask_token_id,
            max_prompt_length=cfg.max_prompt_length,
            truncation=cfg.prompt_truncation,
        )
        task.prompts(1, split="train", seed=cfg.seed)  # reads the task's data now
    else:
        tokenizer = None
    model = model if model is not None else load_with_options(cfg.base_model, cfg.load, tokenizer)
    return model, task


class Trainer(ABC):
    """Set-up and plumbing of a reward fine-tuning run; a method subclasses it.

    ``__init__`` builds the trained model and optimiser, then calls the method's :meth:`_build_state` (its teacher or
    reference, ``self.buffer`` and ``self.state``), then resumes from the latest checkpoint or starts a fresh run.
    A method must write :meth:`train`, :meth:`_build_state`, :meth:`_checkpoint_copies` and
    :meth:`_checkpoints_kept`; it may override ``rollout_model``, ``_extra_tensors`` / ``_load_extra_tensors`` (extra
    safetensors files per checkpoint), ``_summary`` (trainer_state.json) and ``_after_load``.
    """

    buffer: ReplayBuffer
    state: RunState

    nonfinite_hint = "try a lower lr, or mixed_precision=no"
    # Metrics that are equal on every rank (not averaged) and counters summed over ranks, for ``_reduce``.
    rank_constant_metrics: tuple[str, ...] = ("lr",)
    summed_metrics: tuple[str, ...] = ("reward_errors", "reward_timeouts", "rollouts", "tokens_per_s")

    def __init__(
        self,
        cfg: RunConfig,
        *,
        model: DiffusionLM | None = None,
        task: TokenTask | None = None,
        reward_fns: list[RewardFn] | None = None,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
    ) -> None:
        self.cfg = cfg
        model, task = load_model_and_task(cfg, model, task)
        self.task = task
        check(
            cfg.sampling.gen_length == self.task.gen_length,
            "sampling.gen_length",
            f"must equal the task's response length {self.task.gen_length}, got {cfg.sampling.gen_length}",
        )
        self.scorer = RewardScorer(reward_fns or [self.task.reward], cfg.reward_timeout)
        self.progress = progress
        self.resume = resume
        self.out = Path(cfg.output_dir)
        self.accelerator = make_accelerator(
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.grad_accum,
            log_with=None if cfg.log_with == "none" else cfg.log_with,
            project_dir=str(self.out),
        )
        if self.accelerator.is_main_process:
            prepare_run_dir(self.out, resume=resume, overwrite=overwrite, min_free_bytes=self._checkpoint_bytes(model))
        self.accelerator.wait_for_everyone()
        # DeepSpeed steps, clips and skips overflowing fp16 steps inside its engine.
        self._engine_clips = self.accelerator.distributed_type == DistributedType.DEEPSPEED
        rank = self.accelerator.process_index
        set_seed(cfg.seed + rank)
        device = self.accelerator.device

        if self.uses_lora:
            if getattr(model.model, "is_loaded_in_4bit", False):
                # Norms and head in fp32, input gradients on: what peft needs to train adapters on a 4-bit base.
                model.model = prepare_model_for_kbit_training(model.model, cfg.gradient_checkpointing)
            lora = LoraConfig(
                r=cfg.lora.r,
                lora_alpha=cfg.lora.alpha,
                lora_dropout=cfg.lora.dropout,
                target_modules=cfg.lora.target_modules,
            )
            model = add_lora_adapters(model, lora)
        if cfg.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = adamw(params, cfg)
        self.student, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.raw_student: DiffusionLM = self.accelerator.unwrap_model(self.student)
        self.mask_id = self.raw_student.mask_token_id
        self.sample_generator = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank)
        self.batch_generator = torch.Generator().manual_seed(cfg.seed * 1000 + rank + 1)
        self.log = MetricsLog(self.out / "metrics.jsonl", enabled=self.accelerator.is_main_process)
        self.token_counter = TokenCounter()
        self.raw_student.register_forward_pre_hook(self.token_counter, with_kwargs=True)
        self._callback: StepCallback | None = None
        self._build_state()
        self._start()

    @property
    def uses_lora(self) -> bool:
        """Train LoRA adapters (``student`` and a frozen ``teacher``/reference) on a frozen base."""
        return self.cfg.finetune == "lora"

    # ---------------------------------------------------------------- the loop

    def train(self, callback: StepCallback | None = None) -> DiffusionLM:
        """Run the method to its last step; return the trained model. Every step is the method's :meth:`_step`;
        around it the loop logs, evaluates every ``eval_every`` steps, shows progress and checkpoints (every
        ``save_every`` steps, where :meth:`_checkpoint_due` says, and at the end).

        ``callback(event, trainer, record)`` lets a study watch a run: ``"step"`` after every step with its metrics
        record, and the events a method adds (DTM: ``"phase_start"``). Its model calls are not counted as compute.
        """
        cfg = self.cfg
        self._callback = callback
        total = self.total_steps
        if self.state.step == 0 and cfg.eval_prompts:
            self._log_eval("base")
        bar = tqdm(
            total=total,
            initial=self.state.step,
            desc=f"{cfg.method} {self.out.name}",
            disable=not self.progress or not self.accelerator.is_main_process,
        )
        while self.state.step < total:
            record = self._step()
            record.update(
                reward_errors=self.state.reward_errors,
                reward_timeouts=self.state.reward_timeouts,
                rollouts=self.state.rollouts,
            )
            self._log(self._reduce(record))
            self._notify("step", record)
            self._periodic_eval(total)
            bar.update(1)
            bar.set_postfix(self._postfix(record))
            step = self.state.step
            if step == total or self._checkpoint_due() or (cfg.save_every and step % cfg.save_every == 0):
                self.save_checkpoint()
        bar.close()
        return self._finish()

    def _notify(self, event: str, record: dict[str, Any]) -> None:
        """Tell the ``train`` callback, if any, about ``event`` (its model calls uncounted)."""
        if self._callback is not None:
            with self.uncounted():
                self._callback(event, self, record)

    def _postfix(self, record: dict[str, Any]) -> dict[str, str]:
        """What the progress bar shows after a step."""
        return {"loss": f"{record['loss']:.3f}", "reward": f"{record['reward_mean']:.3f}"}

    def _checkpoint_due(self) -> bool:
        """Whether the step just taken ends a unit that is checkpointed (DTM: a phase)."""
        return False

    # ---------------------------------------------------------------- what a method writes

    @property
    @abstractmethod
    def total_steps(self) -> int:
        """Steps of the whole run (the loop's unit: DTM optimizer steps, the baselines' rollout batches)."""

    @abstractmethod
    def _step(self) -> dict[str, Any]:
        """One step of the method (``self.state.step`` advanced); its metrics record."""

    @abstractmethod
    def _build_state(self) -> None:
        """The method's own state, built once the trained model exists: ``self.buffer`` (a
        :class:`~dtm.training.buffer.ReplayBuffer`), ``self.state`` (a :class:`RunState`), a teacher or reference."""

    @abstractmethod
    def _checkpoint_copies(self) -> int:
        """fp32 copies of the trainable weights in one checkpoint (weights, AdamW's two moments, teacher, ...)."""

    @abstractmethod
    def _checkpoints_kept(self) -> int:
        """The most checkpoints on disk at once."""

    # ---------------------------------------------------------------- hooks a method may override

    @property
    def rollout_model(self) -> DiffusionLM:
        """The model whose samples fill the rollout buffer (on-policy methods: the trained model)."""
        return self.raw_student

    def _extra_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        """Extra weight files of a checkpoint: file stem -> tensors (e.g. the teacher)."""
        return {}

    def _load_extra_tensors(self, path: Path) -> None:  # noqa: B027 (optional hook, nothing by default)
        """Restore what ``_extra_tensors`` wrote."""

    def _summary(self) -> dict[str, Any]:
        """The checkpoint's ``trainer_state.json``."""
        return dict(self.state.__dict__)

    def _after_load(self) -> None:  # noqa: B027 (optional hook, nothing by default)
        """Derived state to restore after ``load_checkpoint``."""

    # ---------------------------------------------------------------- set-up helpers

    def _checkpoint_bytes(self, model: DiffusionLM) -> int:
        """Disk space the kept checkpoints and the final model need: ``_checkpoint_copies`` fp32 copies of the
        trainable weights (or LoRA adapters) per checkpoint, times the checkpoints kept at once (one more while a new
        one is written), plus the final model. 1 MB per checkpoint covers the run state (buffer, RNG)."""
        if self.uses_lora:
            trainable = sum(
                self.cfg.lora.r * (m.in_features + m.out_features)
                for name, m in model.model.named_modules()
                if isinstance(m, torch.nn.Linear) and _is_lora_target(name, self.cfg.lora.target_modules)
            )
        else:
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        per_checkpoint = 4 * trainable * self._checkpoint_copies() + RUN_STATE_BYTES
        final_model = sum(p.numel() * p.element_size() for p in model.parameters())
        return per_checkpoint * (self._checkpoints_kept() + 1) + final_model

    @contextmanager
    def uncounted(self) -> Iterator[None]:
        """Model calls that are not the run's compute (evaluations, a study's measurements)."""
        self.token_counter.enabled = False
        try:
            yield
        finally:
            self.token_counter.enabled = True

    def _prompt_pool(self, needed: int, key: str) -> PromptBatch:
        """This rank's shard of the training prompt pool: no prompt is shared between ranks. ``needed`` prompts per
        rank must fit (``key`` names the setting that needs them)."""
        cfg = self.cfg
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        pool = self.task.prompts(cfg.prompt_pool, split="train", seed=cfg.seed)
        pool = pool.select(range(rank, cfg.prompt_pool, world))
        check(
            len(pool) >= needed,
            "prompt_pool",
            f"{cfg.prompt_pool} prompts over {world} processes leave {len(pool)} per process, "
            f"fewer than {key}={needed}",
        )
        return pool

    def _start(self) -> None:
        """Resume from the newest intact checkpoint (``resume=True``) or start a fresh run folder."""
        self.token_counter.state = self.state
        latest = self._intact_checkpoint() if self.resume else None
        if latest is not None:
            check_resume_settings(self.cfg, self.out)
            self.load_checkpoint(latest)
        elif self.accelerator.is_main_process:
            if self.resume:
                logger.warning("--resume: %s holds no checkpoint to resume from; starting a new run there", self.out)
            save_config(self.cfg, self.out / "config.yaml")
            self.log.path.unlink(missing_ok=True)  # a run killed before its first checkpoint starts over
        if self.cfg.log_with != "none":
            run_name = {"wandb": {"name": self.out.name, "dir": str(self.out)}, "trackio": {"name": self.out.name}}
            self.accelerator.init_trackers("dtm", config=tracker_config(self.cfg), init_kwargs=run_name)

    def _intact_checkpoint(self) -> Path | None:
        """The newest checkpoint whose files match its manifest: the main process first sets newer damaged ones aside
        (truncated or altered files), with a warning. If every checkpoint is damaged, resuming would silently start
        over, so that is an error."""
        if self.accelerator.is_main_process:
            ckpt.set_aside_damaged(self.out)
        self.accelerator.wait_for_everyone()
        latest = ckpt.latest_checkpoint(self.out)
        if latest is None and any(self.out.glob(f"{ckpt.DAMAGED_PREFIX}{ckpt.STEP_PREFIX}*")):
            raise RunError(
                f"every checkpoint in {self.out} is damaged (set aside as {ckpt.DAMAGED_PREFIX}*); nothing to resume "
                "from: start over with --overwrite"
            )
        return latest

    # ---------------------------------------------------------------- rollouts and updates

    def _rollout(self, prompts: PromptBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rollouts of ``rollout_model`` for the buffer, scored by the reward functions."""
        stats = DecodeStats.zeros(len(prompts))
        start = time.perf_counter()
        responses = rollout(self.rollout_model, prompts, self.cfg.sampling, self.sample_generator, stats=stats)
        self.state.rollout_seconds += time.perf_counter() - start
        self.state.rollout_passes += int(stats.passes.sum())
        self.state.rollout_positions += int(stats.tokens.sum())
        scores = self.scorer(responses, prompts.meta)
        evaluations = len(prompts) * len(self.scorer.reward_fns)
        if self.cfg.max_reward_errors < 1 and scores.errors > self.cfg.max_reward_errors * evaluations:
            raise RunError(
                f"{scores.errors} of {evaluations} reward evaluations of a rollout batch failed (raised or returned "
                f"a non-finite value; each scored 0), more than max_reward_errors={self.cfg.max_reward_errors} of "
                "them: check the reward functions (the warnings above name them and their errors)"
            )
        self.state.reward_errors += scores.errors
        self.state.reward_timeouts += scores.timeouts
        self.state.rollouts += len(prompts)
        return responses, scores.rewards, self.task.is_correct(responses, prompts.meta)

    def _apply_gradients(self, loss: float) -> tuple[float, bool]:
        """Clip the accumulated gradients and step the optimiser, unless the loss or gradient is not finite (then the
        step is skipped and counted); clear the gradients. Returns (gradient norm before clipping, stepped)."""
        # DeepSpeed clips inside its engine and returns no norm.
        grad_norm = self.accelerator.clip_grad_norm_(self.student.parameters(), self.cfg.grad_clip)
        grad_norm = float("nan") if grad_norm is None else float(grad_norm)
        finite = math.isfinite(loss) and (math.isfinite(grad_norm) or self._engine_clips)
        if finite:
            self.optimizer.step()
            self.state.nonfinite_steps = 0
        else:
            self.state.nonfinite_steps += 1
            self.state.skipped_steps += 1
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm, finite

    def _check_nonfinite(self) -> None:
        """Stop once ``max_nonfinite_steps`` optimizer steps in a row were skipped."""
        if self.state.nonfinite_steps >= self.cfg.max_nonfinite_steps:
            last = ckpt.latest_checkpoint(self.out)
            raise RunError(
                f"{self.state.nonfinite_steps} consecutive optimizer steps had a non-finite loss or gradient "
                f"(max_nonfinite_steps={self.cfg.max_nonfinite_steps}); stopping at step {self.state.step}. "
                f"The last good checkpoint is {last}; {self.nonfinite_hint}."
            )

    # ---------------------------------------------------------------- logging, evaluation, final model

    def _reduce(self, record: dict[str, Any]) -> dict[str, Any]:
        """Average per-rank metrics over ranks (``summed_metrics`` are summed, ``rank_constant_metrics`` kept)."""
        if self.accelerator.num_processes == 1:
            return record
        summed = list(self.summed_metrics)
        keys = [
            k
            for k, v in record.items()
            if isinstance(v, float) and k not in self.rank_constant_metrics and k not in summed
        ]
        values = torch.tensor([float(record[k]) for k in keys + summed], device=self.accelerator.device)
        values = self.accelerator.reduce(values, reduction="sum")
        world = self.accelerator.num_processes
        out = dict(record)
        for i, key in enumerate(keys + summed):
            out[key] = values[i].item() / (world if key in keys else 1)
        return out

    def _log(self, record: dict[str, Any]) -> None:
        self.log.write(record)
        if self.cfg.log_with != "none":
            scalars = {k: v for k, v in record.items() if isinstance(v, int | float) and k != "step"}
            self.accelerator.log(scalars, step=record["step"])

    def _log_eval(self, tag: str) -> dict[str, float]:
        start = time.perf_counter()
        with self.uncounted():
            result = eval_record(
                self.raw_student, self.task, self.cfg.eval_prompts, self.cfg.sampling, seed=self.cfg.seed
            )
        self.state.eval_seconds += time.perf_counter() - start
        self._log({"step": self.state.step, "eval": tag, "rollouts": self.state.rollouts, **result})
        return result

    def _periodic_eval(self, total_steps: int) -> None:
        """The ``eval_every`` evaluation after a step (the last step's is the final one)."""
        every = self.cfg.eval_every
        if every and self.state.step % every == 0 and self.state.step < total_steps:
            self._log_eval("step")

    def _finish(self) -> DiffusionLM:
        """Final evaluation, the final model in ``output_dir/final``, trackers closed; return the trained model."""
        if self.cfg.eval_prompts:
            self._log_eval("final")
        if self.accelerator.is_main_process:
            self._save_final(self.out / "final")
        self.accelerator.end_training()
        self.scorer.close()
        return self.raw_student

    def _save_final(self, folder: Path) -> None:
        """The trained model as a plain model folder for ``load_model`` (LoRA: merged into a copy), with the base
        model's tokenizer when it has one (so ``dtm eval`` reads the folder alone), plus the LoRA adapter."""
        if not self.uses_lora:
            save_model(self.raw_student, folder / "model")
        else:
            peft = self.raw_student.model
            peft.save_pretrained(str(folder / "adapter"), selected_adapters=["student"])
            merged = copy.deepcopy(peft).merge_and_unload(adapter_names=["student"])
            save_model(DiffusionLM(merged, self.mask_id), folder / "model")
        tokenizer = load_tokenizer(self.cfg.base_model, self.cfg.load.trust_remote_code)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(folder / "model"))

    # ---------------------------------------------------------------- checkpoints

    def save_checkpoint(self) -> Path | None:
        """Write ``step-XXXXXXXX`` atomically: weights, extra weights, optimizer, buffers, RNG states, counters."""
        rank_states = gather_object([self._rank_state()])
        if not self.accelerator.is_main_process:
            self.accelerator.wait_for_everyone()
            return None

        def write(tmp: Path) -> None:
            save_file(_contiguous(trainable_state(self.raw_student)), tmp / "student.safetensors")
            for stem, tensors in self._extra_tensors().items():
                save_file(_contiguous(tensors), tmp / f"{stem}.safetensors")
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save({"ranks": rank_states}, tmp / "state.pt")
            (tmp / "trainer_state.json").write_text(json.dumps(self._summary(), indent=2))
            save_config(self.cfg, tmp / "config.yaml")

        path = ckpt.atomic_write_dir(self.out / ckpt.checkpoint_name(self.state.step), write)
        ckpt.prune_checkpoints(self.out, self.cfg.keep_checkpoints)
        self.accelerator.wait_for_everyone()
        return path

    def _rank_state(self) -> dict[str, Any]:
        """What differs between ranks: buffer, generators, global RNGs and counters."""
        return {
            "buffer": self.buffer.state_dict(),
            "rng": ckpt.rng_state(),
            "sample_generator": self.sample_generator.get_state().cpu(),
            "batch_generator": self.batch_generator.get_state(),
            "train_state": dict(self.state.__dict__),
        }

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore everything ``save_checkpoint`` wrote; training continues exactly where it stopped."""
        path = Path(path)
        load_trainable_state(self.raw_student, load_file(path / "student.safetensors"))
        self._load_extra_tensors(path)
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
        ranks = torch.load(path / "state.pt", weights_only=False)["ranks"]
        if len(ranks) != self.accelerator.num_processes:
            raise ValueError(
                f"checkpoint {path} was written by {len(ranks)} processes; resume it with the same number "
                f"(this run has {self.accelerator.num_processes})"
            )
        state = ranks[self.accelerator.process_index]
        self.buffer.load_state_dict(state["buffer"])
        ckpt.set_rng_state(state["rng"])
        self.sample_generator.set_state(state["sample_generator"])
        self.batch_generator.set_state(state["batch_generator"])
        self.state = type(self.state)(**state["train_state"])
        self.token_counter.state = self.state
        self._after_load()
        self.log.truncate_after(self.state.step)


def _is_lora_target(name: str, targets: list[str] | str) -> bool:
    """peft's rule: a regular expression matches the full module name, a list entry matches its last parts."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith(f".{t}") for t in targets)


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}
