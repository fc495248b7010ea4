"""The methods DTM is compared with, in the same framework: the RL baselines diffu-GRPO (d1), wd1 and SPG, and the
likelihood-free peers DMPO and GDSD.

Each is an on-policy loop over rollout batches; read :meth:`GroupRolloutTrainer.train` top to bottom. One step:

1. ``P = micro_batch * grad_accum / num_generations`` fresh prompts per process, ``num_generations`` (K) completions
   each from the current policy with the project's SAR sampler at the rollout temperature, scored by the reward
   functions (the buffer of :class:`~dtm.training.buffer.ReplayBuffer`, rebuilt every step).
2. Group-relative advantages, and what the method needs before its updates (d1: the log-probabilities of the rollout
   policy and of the reference; wd1: the group softmax weights; DMPO: its importance weights, from an ELBO estimate of
   each rollout's log-ratio to the reference; GDSD: every inner update's masked states and the rollout policy's and
   reference's log-probabilities on them).
3. ``inner_updates`` (mu) optimizer steps on the batch, each accumulating gradients over ``grad_accum`` micro-batches
   that together cover it, with the method's loss from :mod:`dtm.diffusion.rl_losses` (diffu-GRPO, wd1, SPG) or
   :mod:`dtm.diffusion.peer_losses` (DMPO, GDSD).

Rollouts, rewards, gradient clipping, non-finite-step skipping, checkpoints (exact resumption), JSONL metrics,
evaluation and the final model are the shared plumbing of :class:`~dtm.training.trainer.Trainer`. The learning rate
follows one warmup / constant / decay schedule over all ``steps * inner_updates`` optimizer steps.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file

from dtm.config.baselines import (
    DiffuGRPOConfig,
    DMPOConfig,
    GDSDConfig,
    GroupRolloutConfig,
    SPGConfig,
    WD1Config,
)
from dtm.diffusion.masking import MaskedState, Masking, masked_states, model_inputs
from dtm.diffusion.peer_losses import dmpo_weights, effective_sample_size, gdsd_loss, leave_one_out_advantages
from dtm.diffusion.rl_losses import (
    block_elbo,
    block_eubo,
    group_advantages,
    grpo_loss,
    mean_field_input,
    spg_loss,
    token_log_probs,
    wd1_loss,
    wd1_weights,
)
from dtm.training.buffer import ReplayBuffer
from dtm.training.schedule import lr_at, set_lr
from dtm.training.teacher import CopyTeacher, LoraTeacher, frozen_teacher, trainable_state
from dtm.training.trainer import RunState, Trainer

# A model call: (input_ids, attention_mask=..., select=...) -> logits (the trained model, or a frozen reference).
Forward = Callable[..., torch.Tensor]


@dataclass
class GroupRolloutState(RunState):
    """Counters saved in every checkpoint (``step`` counts rollout batches), and the training time so far."""

    wall_time: float = 0.0


@dataclass
class RolloutBatch:
    """One step's rollouts on this process, rows grouped by prompt, and what the method precomputed per row.

    ``inputs[k]``: d1/wd1 inputs of inner update k; ``states[k]``: GDSD's masked states of inner update k;
    ``old_log_probs[k]``, ``ref_log_probs[k]``: the log-probs of the rollout policy and the reference on either (d1,
    GDSD); ``w_plus``, ``w_minus``: wd1's or DMPO's weights; ``stats``: metrics of the batch for the step's record.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    responses: torch.Tensor
    rewards: torch.Tensor
    advantages: torch.Tensor
    inputs: list[torch.Tensor] = field(default_factory=list)
    states: list[StateBatch] = field(default_factory=list)
    old_log_probs: list[torch.Tensor] = field(default_factory=list)
    ref_log_probs: list[torch.Tensor] = field(default_factory=list)
    w_plus: torch.Tensor | None = None
    w_minus: torch.Tensor | None = None
    stats: dict[str, float] = field(default_factory=dict)


class StateBatch(NamedTuple):
    """Masked states of some rows' responses with their prompts: prompt ids and attention mask ``[B, P]``, clean
    responses ``[B, G]`` and their states."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    responses: torch.Tensor
    state: MaskedState

    def rows(self, index: slice) -> StateBatch:
        return StateBatch(
            self.prompt_ids[index], self.prompt_mask[index], self.responses[index], self.state.rows(index)
        )


class GroupRolloutTrainer(Trainer):
    """The loop shared by the baselines; a method provides ``_prepare`` and ``_micro_loss``."""

    normalize_advantages = False
    summed_metrics = ("reward_errors", "reward_timeouts", "rollouts")

    cfg: GroupRolloutConfig

    def _build_state(self) -> None:
        cfg = self.cfg
        self.reference: CopyTeacher | LoraTeacher | None = None
        if self.needs_reference:
            self.reference = frozen_teacher(self.raw_student, lora=self.uses_lora)
        pool = self._prompt_pool(cfg.prompts_per_step, "micro_batch x grad_accum / num_generations")
        seed = cfg.seed + self.accelerator.process_index
        self.buffer = ReplayBuffer(pool, cfg.prompts_per_step, cfg.num_generations, cfg.sampling.gen_length, seed)
        self.state = GroupRolloutState()

    @property
    def needs_reference(self) -> bool:
        """Whether the method keeps a frozen reference policy (d1's KL term)."""
        return False

    def _checkpoint_copies(self) -> int:
        """Weights, two AdamW moments, and the reference when there is one."""
        return 4 if self.needs_reference else 3

    def _checkpoints_kept(self) -> int:
        every = self.cfg.save_every
        return self.cfg.keep_checkpoints or (self.cfg.rollout_batches // every if every else 0) + 1

    # ---------------------------------------------------------------- method hooks

    def _advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """Advantages of a step's rewards: group-relative, scaled by the group's std if ``normalize_advantages``."""
        return group_advantages(rewards, self.cfg.num_generations, scale=self.normalize_advantages)

    def _prepare(self, batch: RolloutBatch) -> None:
        """Fill the method's per-row data of a fresh rollout batch (no gradient)."""

    @abstractmethod
    def _micro_loss(self, batch: RolloutBatch, rows: slice, update: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of rows ``rows`` of the batch in inner update ``update``, averaged over the rows; and diagnostics."""

    # ---------------------------------------------------------------- one step

    def _rollout_batch(self) -> RolloutBatch:
        """K fresh rollouts for each of the step's prompts (the buffer rebuilt), with group-relative advantages."""
        self.buffer.rebuild(self._rollout)
        device = self.accelerator.device
        prompts = self.buffer.pool.select(self.buffer.prompt_rows())
        rewards = self.buffer.rewards
        advantages = self._advantages(rewards)
        batch = RolloutBatch(
            prompts.ids.to(device),
            prompts.attention_mask.to(device),
            self.buffer.responses.to(device),
            rewards.to(device),
            advantages.to(device),
        )
        self._prepare(batch)
        return batch

    def _update(self, batch: RolloutBatch, update: int) -> dict[str, float]:
        """One optimizer step over the whole batch, accumulated over ``grad_accum`` micro-batches."""
        cfg = self.cfg
        total_loss, stats = 0.0, {}
        # accelerate's accumulate() skips the gradient all-reduce on all but the last micro-batch, and its backward()
        # divides the loss by grad_accum (under DeepSpeed, the engine does both).
        for i in range(cfg.grad_accum):
            rows = slice(i * cfg.micro_batch, (i + 1) * cfg.micro_batch)
            with self.accelerator.accumulate(self.student):
                loss, micro_stats = self._micro_loss(batch, rows, update)
                self.accelerator.backward(loss)
            total_loss += loss.item() / cfg.grad_accum
            for key, value in micro_stats.items():
                stats[key] = stats.get(key, 0.0) + value / cfg.grad_accum
        grad_norm, _ = self._apply_gradients(total_loss)
        return {"loss": total_loss, "grad_norm": grad_norm, **stats}

    def _mean_field_inputs(self, batch: RolloutBatch, p_mask: float) -> list[torch.Tensor]:
        """One input per inner update (a fresh prompt mask each), drawn before the updates so that d1's rollout-time
        log-probabilities and the updates see the same inputs."""
        gen_length = batch.responses.shape[1]
        return [
            mean_field_input(
                batch.prompt_ids, batch.prompt_mask, gen_length, p_mask, self.mask_id, self.sample_generator
            )
            for _ in range(self.cfg.inner_updates)
        ]

    def _mean_field_log_probs(self, model: Forward, x: torch.Tensor, batch: RolloutBatch, rows: slice) -> torch.Tensor:
        """Per-token log-probabilities ``[n, G]`` of the rows' responses from one forward pass on their mean-field
        input ``x`` (prompt partly masked, response fully masked)."""
        responses = batch.responses[rows]
        all_positions = torch.ones_like(responses, dtype=torch.bool)
        _, select, attention = model_inputs(batch.prompt_ids[rows], batch.prompt_mask[rows], responses, all_positions)
        with self.accelerator.autocast():
            logits = model(x, attention_mask=attention, select=select)
        return token_log_probs(logits, responses)

    def _frozen_log_probs(self, model: Forward, batch: RolloutBatch) -> list[torch.Tensor]:
        """Mean-field log-probabilities of the whole batch under a frozen model, for every inner update's input."""
        return [
            self._by_micro_batch(lambda rows, x=x: self._mean_field_log_probs(model, x[rows], batch, rows), len(x))
            for x in batch.inputs
        ]

    @torch.no_grad()
    def _by_micro_batch(self, fn: Callable[[slice], torch.Tensor], n: int) -> torch.Tensor:
        """``fn`` of rows ``0 .. n - 1``, one micro-batch of rows at a time, concatenated (no gradient)."""
        step = self.cfg.micro_batch
        return torch.cat([fn(slice(start, start + step)) for start in range(0, n, step)])

    def _masked_states(self, batch: RolloutBatch, rows: slice, copies: int, masking: Masking) -> StateBatch:
        """``copies`` fresh masked states of each of the rows' responses, drawn with the sample generator; row
        ``c * n + i`` is copy c of the i-th row."""
        responses = batch.responses[rows].repeat(copies, 1)
        block = self.cfg.sampling.block_length
        state = masked_states(responses, masking, block, self.mask_id, self.sample_generator)
        return StateBatch(
            batch.prompt_ids[rows].repeat(copies, 1), batch.prompt_mask[rows].repeat(copies, 1), responses, state
        )

    def _state_log_probs(self, model: Forward, states: StateBatch) -> torch.Tensor:
        """log pi(o^k | z) ``[B, G]`` of the clean tokens at each state's loss positions (0 elsewhere), from one
        forward pass with logits only there."""
        loss_mask = states.state.loss_mask
        x, select, attention = model_inputs(states.prompt_ids, states.prompt_mask, states.state.noisy, loss_mask)
        with self.accelerator.autocast():
            logits = model(x, attention_mask=attention, select=select)
        selected = token_log_probs(logits, states.responses[loss_mask])
        return torch.zeros(loss_mask.shape, dtype=selected.dtype, device=selected.device).masked_scatter(
            loss_mask, selected
        )

    def _copies_log_probs(self, model: Forward, states: StateBatch, copies: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_state_log_probs` of states made by :meth:`_masked_states` and their loss masks, as
        ``[copies, n, G]`` (the layout of :func:`dtm.diffusion.rl_losses.block_elbo`)."""
        shape = (copies, -1, states.responses.shape[1])
        return self._state_log_probs(model, states).view(shape), states.state.loss_mask.view(shape)

    def _sync_reference(self, every: int) -> None:
        """Copy the policy into the reference every ``every`` steps (0 = never)."""
        if self.reference is not None and every and self.state.step % every == 0:
            self.reference.sync(trainable_state(self.raw_student))

    # ---------------------------------------------------------------- loop

    @property
    def total_steps(self) -> int:
        return self.cfg.rollout_batches

    def _step(self) -> dict[str, Any]:
        """One rollout batch: fresh rollouts of the current policy, then ``inner_updates`` optimizer steps on it."""
        cfg = self.cfg
        start = time.perf_counter()
        batch = self._rollout_batch()
        updates = []
        for k in range(cfg.inner_updates):
            self._check_nonfinite()
            lr = lr_at(
                self.state.step * cfg.inner_updates + k,
                cfg.total_updates,
                cfg.lr,
                cfg.lr_min,
                cfg.lr_warmup,
                cfg.lr_decay,
            )
            set_lr(self.optimizer, lr)
            updates.append(self._update(batch, k))
        self.state.step += 1
        self._after_step()
        self.state.wall_time += time.perf_counter() - start
        record = {"step": self.state.step, "lr": lr}
        record.update({key: sum(u[key] for u in updates) / len(updates) for key in updates[0]})
        groups = batch.rewards.view(-1, cfg.num_generations)
        zero_std = (groups == groups[:, :1]).all(dim=1).float().mean().item()
        record.update(self.buffer.stats(), zero_std_groups=zero_std, skipped_steps=self.state.skipped_steps)
        record.update(batch.stats, wall_time=self.state.wall_time)
        return record

    def _after_step(self) -> None:
        """What happens after a step's updates (d1: reference sync)."""

    # ---------------------------------------------------------------- checkpoints

    def _extra_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        return {} if self.reference is None else {"reference": self.reference.state_dict()}

    def _load_extra_tensors(self, path: Path) -> None:
        if self.reference is not None:
            self.reference.load_state_dict(load_file(path / "reference.safetensors"))

    def _summary(self) -> dict[str, Any]:
        return dict(self.state.__dict__) | {"method": self.cfg.method}


class DiffuGRPOTrainer(GroupRolloutTrainer):
    """diffu-GRPO (d1): per-token one-step mean-field log-probabilities in GRPO's clipped objective with a KL penalty
    to the reference policy (:func:`dtm.diffusion.rl_losses.grpo_loss`).

    The rollout policy's log-probabilities are computed once per inner update input before the updates; with a single
    inner update they equal the current ones, so the detached current values are used (ratio 1, no extra forward).
    """

    normalize_advantages = True
    cfg: DiffuGRPOConfig

    @property
    def needs_reference(self) -> bool:
        return self.cfg.beta > 0

    def _prepare(self, batch: RolloutBatch) -> None:
        batch.inputs = self._mean_field_inputs(batch, self.cfg.p_mask)
        if self.cfg.inner_updates > 1:
            batch.old_log_probs = self._frozen_log_probs(self.raw_student, batch)
        if self.reference is not None:
            batch.ref_log_probs = self._frozen_log_probs(self.reference, batch)

    def _micro_loss(self, batch: RolloutBatch, rows: slice, update: int) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        log_probs = self._mean_field_log_probs(self.student, batch.inputs[update][rows], batch, rows)
        old = batch.old_log_probs[update][rows] if batch.old_log_probs else log_probs.detach()
        ref = batch.ref_log_probs[update][rows] if batch.ref_log_probs else None
        out = grpo_loss(log_probs, old, batch.advantages[rows], cfg.clip_eps, cfg.beta, ref)
        return out.loss, {"clip_fraction": out.clip_fraction.item(), "kl": out.kl.item()}

    def _after_step(self) -> None:
        self._sync_reference(self.cfg.ref_sync_every)


class WD1Trainer(GroupRolloutTrainer):
    """wd1: the group-softmax weighted log-likelihood (:func:`dtm.diffusion.rl_losses.wd1_loss`), with the sequence
    log-likelihood estimated as the sum over response tokens of d1's one-step mean-field log-probabilities (as in
    the wd1 paper's implementation): one forward pass of the current policy per micro-batch, no old or reference
    policy."""

    cfg: WD1Config

    def _prepare(self, batch: RolloutBatch) -> None:
        batch.inputs = self._mean_field_inputs(batch, self.cfg.p_mask)
        batch.w_plus, batch.w_minus = wd1_weights(batch.advantages, self.cfg.num_generations, self.cfg.psi)

    def _micro_loss(self, batch: RolloutBatch, rows: slice, update: int) -> tuple[torch.Tensor, dict[str, float]]:
        log_probs = self._mean_field_log_probs(self.student, batch.inputs[update][rows], batch, rows)
        seq_log_probs = log_probs.sum(dim=1)
        loss = wd1_loss(seq_log_probs, batch.w_plus[rows], batch.w_minus[rows], self.cfg.num_generations)
        return loss, {"seq_log_prob": seq_log_probs.mean().item()}


class SPGTrainer(GroupRolloutTrainer):
    """SPG: ELBO for positive-advantage samples, EUBO (or the mixture) for the others
    (:func:`dtm.diffusion.rl_losses.spg_loss`), both estimated from ``mc_samples`` SAR-aligned masked states per
    sequence (a random active block, earlier blocks clean, later blocks masked), drawn afresh for every
    micro-batch; all states of a micro-batch go through one forward pass."""

    cfg: SPGConfig

    def _micro_loss(self, batch: RolloutBatch, rows: slice, update: int) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        states = self._masked_states(batch, rows, cfg.mc_samples, "sar")
        log_probs, loss_mask = self._copies_log_probs(self.student, states, cfg.mc_samples)
        elbo = block_elbo(log_probs, loss_mask)
        eubo = block_eubo(log_probs, loss_mask, cfg.eubo_beta)
        loss = spg_loss(batch.advantages[rows], elbo, eubo, cfg.eubo_weight)
        return loss, {"elbo": elbo.mean().item(), "eubo": eubo.mean().item()}


class DMPOTrainer(GroupRolloutTrainer):
    """DMPO: the policy matched to the reward-tilted target p*(o) ∝ p_ref(o) exp(r(o) / alpha) (per prompt) by a
    weighted denoising cross-entropy on the rollouts,

        L(theta) = (1/P) sum_j sum_{i in group j} (w+_i - lambda b_i) DCE_theta(o_i),
        DCE_theta(o) = -(1/S) sum_s (1/|M_s|) sum_{k in M_s} log pi_theta(o^k | z_s)   (S = ``mc_samples`` states)

    with the self-normalised importance weights w+ of p* against the rollout policy and the weight baseline b of
    :func:`dtm.diffusion.peer_losses.dmpo_weights`; G * (-DCE) is the ELBO estimate of log pi_theta(o). Without a
    baseline and with every state, the minimiser is the denoiser of p*: pi_theta(v | z) = p*(o^k = v | z) (tested by
    enumeration). The importance weights need log p_ref(o) - log pi_old(o), estimated once per rollout batch as the
    difference of the two models' ELBOs on the same ``ratio_samples`` masked states (DMPO's estimate), both models in
    evaluation mode, so that it is exactly 0 while the policy is the reference; ``ratio_samples = 0`` drops the
    reference and targets the rollout policy tilted. The weights stay
    fixed over the batch's ``inner_updates``, whose states are drawn afresh for every micro-batch; the loss is
    :func:`dtm.diffusion.rl_losses.wd1_loss`, the same weighted log-likelihood as wd1's with other weights and another
    likelihood estimate."""

    cfg: DMPOConfig

    @property
    def needs_reference(self) -> bool:
        return self.cfg.ratio_samples > 0

    def _prepare(self, batch: RolloutBatch) -> None:
        cfg = self.cfg
        log_ratio = self._reference_log_ratio(batch) if self.reference is not None else torch.zeros_like(batch.rewards)
        batch.w_plus, batch.w_minus = dmpo_weights(
            batch.rewards, log_ratio, cfg.num_generations, cfg.alpha, cfg.baseline, cfg.baseline_strength
        )
        batch.stats = {
            "ess": effective_sample_size(batch.w_plus, cfg.num_generations),
            "log_ratio": log_ratio.mean().item(),
        }

    def _reference_log_ratio(self, batch: RolloutBatch) -> torch.Tensor:
        """ELBO estimates of log p_ref(o) - log pi_theta(o) per rollout ``[N]``: both models on the same
        ``ratio_samples`` masked states of each response."""
        samples, length = self.cfg.ratio_samples, batch.responses.shape[1]

        def estimate(rows: slice) -> torch.Tensor:
            states = self._masked_states(batch, rows, samples, self.cfg.masking)
            elbos = [
                block_elbo(*self._copies_log_probs(m, states, samples)) for m in (self.reference, self.raw_student)
            ]
            return length * (elbos[0] - elbos[1])

        training = self.raw_student.training
        self.raw_student.eval()  # no dropout: the same weights give the same log-probabilities
        try:
            return self._by_micro_batch(estimate, len(batch.responses))
        finally:
            self.raw_student.train(training)

    def _micro_loss(self, batch: RolloutBatch, rows: slice, update: int) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        states = self._masked_states(batch, rows, cfg.mc_samples, cfg.masking)
        elbo = block_elbo(*self._copies_log_probs(self.student, states, cfg.mc_samples))
        loss = wd1_loss(elbo, batch.w_plus[rows], batch.w_minus[rows], cfg.num_generations)
        return loss, {"elbo": elbo.mean().item()}


class GDSDTrainer(GroupRolloutTrainer):
    """GDSD: each masked token's log-ratio to the rollout policy matched to the scaled leave-one-out advantage, with a
    k2 penalty towards the reference (:func:`dtm.diffusion.peer_losses.gdsd_loss`):

        l_ik = log pi_theta(o_i^k | z_i) - log pi_old(o_i^k | z_i),   k_ik = log pi_theta(o_i^k | z_i) - log pi_ref(...)
        L(theta) = (1/N) sum_i (1/|M_i|) sum_{k in M_i} [(l_ik - psi A_i)^2 + (beta / 2) k_ik^2]

    One masked state z_i per rollout and inner update, drawn before the updates; the rollout policy's and the
    reference's log-probabilities on them are computed then, micro-batch by micro-batch. With a single inner update
    the rollout policy's log-probabilities equal the current ones, so their detached values are used (log-ratio 0, no
    extra forward pass): the gradient is then -2 psi A times that of the per-token ELBO, a policy gradient."""

    cfg: GDSDConfig

    @property
    def needs_reference(self) -> bool:
        return self.cfg.beta > 0

    def _advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        return leave_one_out_advantages(rewards, self.cfg.num_generations)

    def _prepare(self, batch: RolloutBatch) -> None:
        cfg = self.cfg
        everything = slice(0, len(batch.responses))
        batch.states = [self._masked_states(batch, everything, 1, cfg.masking) for _ in range(cfg.inner_updates)]
        if cfg.inner_updates > 1:
            batch.old_log_probs = [self._frozen_state_log_probs(self.raw_student, s) for s in batch.states]
        if self.reference is not None:
            batch.ref_log_probs = [self._frozen_state_log_probs(self.reference, s) for s in batch.states]

    def _frozen_state_log_probs(self, model: Forward, states: StateBatch) -> torch.Tensor:
        return self._by_micro_batch(lambda rows: self._state_log_probs(model, states.rows(rows)), len(states.responses))

    def _micro_loss(self, batch: RolloutBatch, rows: slice, update: int) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        states = batch.states[update].rows(rows)
        log_probs = self._state_log_probs(self.student, states)
        old = batch.old_log_probs[update][rows] if batch.old_log_probs else log_probs.detach()
        ref = batch.ref_log_probs[update][rows] if batch.ref_log_probs else None
        out = gdsd_loss(log_probs, old, states.state.loss_mask, batch.advantages[rows], cfg.psi, cfg.beta, ref)
        return out.loss, {"log_ratio": out.log_ratio.item(), "kl": out.kl.item()}

    def _after_step(self) -> None:
        self._sync_reference(self.cfg.ref_sync_every)
