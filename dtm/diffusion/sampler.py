"""Semi-autoregressive (SAR) block decoding for masked diffusion LMs (LLaDA's sampler, batched), with parallel
decoding and key/value caching.

The response of length G is split into G / B blocks decoded left to right; a position past the current block is never
committed. Proposals are greedy at temperature 0 and Gumbel-max samples from softmax(logits / T) otherwise (the mask
token is never proposed). Logits are only computed for the current block.

**Fixed schedule** (default): block k gets ``steps_k`` rounds (the ``steps`` budget spread as evenly as possible over
blocks); round j commits ``tokens_kj`` of the block's masked positions, those with the highest confidence
(``low_confidence``: the model's probability of the proposed token) or uniformly random ones (``random``). With one
token per round, random order and temperature 1 this samples the model's own sequence law, the law DTM's target is
defined on (:mod:`dtm.diffusion.exact` computes it).

**Confidence-threshold parallel decoding** (``threshold`` = tau in (0, 1]): the number of rounds adapts; each round
commits

- ``low_confidence``: every masked position of the block whose confidence exceeds tau, and at least the most
  confident one;
- ``random``: the block's masked positions in a uniformly random order, the first one and then the following ones
  while each is confident: its largest probability max_v pi(v | x_t, i) exceeds tau.

Committing position j in the same round as i samples x_j from pi(. | x_t) instead of pi(. | x_t, x_i). For a model
whose predictions are the posteriors of one joint law, pi(v* | x_t) = E_{x_i}[pi(v* | x_t, x_i)] for the top token v*,
so max_v pi(v | x_t) > tau bounds the expected total variation between the two by 2 (1 - tau): the random-order rule
approximates the exact random-order sampler (same order, one token per round) by at most 2 (1 - tau) per extra
position a round commits, and tau = 1 is that exact sampler (a probability never exceeds 1). Rows move through a block
at their own pace; a row whose block is full leaves the model calls until every row has finished the block, so a row
decodes the same tokens alone or in a batch.

**Key/value caching** (``cache``): ``"prefix"`` keeps the keys and values of the positions before the block,
``"dual"`` those before and after it. A *refresh* round runs the whole sequence, exactly as without a cache, and stores
them; the block's other rounds run only the block and the positions after it (``prefix``) or only the block (``dual``)
against the stored ones. Attention is over a set of keys, each rotated (RoPE) by its own position, so the block's
queries take position ids ``start..start+B`` and attend to [prefix, suffix, block] in that order. Refreshes happen at
each block's first round and, with ``cache_refresh`` = N > 0, at every N-th round of the block; N = 1 refreshes every
round and decodes the same tokens as no cache. In between, the stored keys and values are stale: with bidirectional
attention they depend, from the second layer on, on the block's tokens, which the rounds change. (They are exact for a
one-layer model, whose keys and values depend on a position's own token only, and the prefix and suffix tokens do not
change inside a block.)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from dtm.config.choices import KVCache, Remasking
from dtm.config.sampling import block_problem, decoding_problem

LogitsFn = Callable[..., torch.Tensor]
Generators = torch.Generator | Sequence[torch.Generator] | None


def steps_per_block(gen_length: int, block_length: int, steps: int) -> list[int]:
    """Spread ``steps`` over the blocks: earlier blocks get the remainder; no block gets more rounds than tokens."""
    _raise(decoding_problem(gen_length, block_length, steps))
    num_blocks = gen_length // block_length
    base, extra = divmod(steps, num_blocks)
    return [min(base + (k < extra), block_length) for k in range(num_blocks)]


def check_blocks(gen_length: int, block_length: int) -> int:
    """The number of blocks; ValueError unless ``block_length`` is positive and divides ``gen_length``."""
    _raise(block_problem(gen_length, block_length))
    return gen_length // block_length


def _raise(problem: tuple[str, str] | None) -> None:
    """A broken decoding rule of :mod:`dtm.config.sampling` as a ValueError ``key: message``."""
    if problem:
        raise ValueError(": ".join(problem))


def tokens_per_step(block_length: int, steps: int) -> list[int]:
    """How many tokens each of ``steps`` rounds commits in a block: as even as possible, summing to the block."""
    base, extra = divmod(block_length, steps)
    return [base + (j < extra) for j in range(steps)]


@dataclass
class DecodeStats:
    """What decoding cost, per row ``[B]``: forward passes the row took part in, positions it ran through the backbone
    (queries), query-key pairs of its attention (summed over layers' heads once: queries x attended positions), and
    positions projected through the output head. Model FLOPs follow from these and the model's shape
    (:func:`dtm.memory_plan.ModelShape.forward_flops`)."""

    passes: torch.Tensor
    tokens: torch.Tensor
    attention_pairs: torch.Tensor
    head_positions: torch.Tensor

    @classmethod
    def zeros(cls, rows: int) -> DecodeStats:
        return cls(*(torch.zeros(rows, dtype=torch.long) for _ in range(4)))

    def rows(self, index: slice) -> DecodeStats:
        """A view of some rows: adding to it adds to this object."""
        return DecodeStats(
            self.passes[index], self.tokens[index], self.attention_pairs[index], self.head_positions[index]
        )

    def add(self, rows: torch.Tensor | None, queries: int, keys: int, head: int) -> None:
        """One forward pass of ``rows`` (None: every row) with ``queries`` positions attending to ``keys``."""
        index = slice(None) if rows is None else rows.cpu()
        self.passes[index] += 1
        self.tokens[index] += queries
        self.attention_pairs[index] += queries * keys
        self.head_positions[index] += head


class _Noise:
    """Uniform draws for a batch: from one generator for the whole batch, or from each row's own generator (then a
    row's draws do not depend on the other rows, so it decodes the same tokens alone or in any batch)."""

    def __init__(self, generator: Generators, batch: int, device: torch.device) -> None:
        self.per_row = generator is not None and not isinstance(generator, torch.Generator)
        if self.per_row and len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for {batch} rows; give one per row or a single one")
        self.generator, self.batch, self.device = generator, batch, device

    def uniform(self, rows: torch.Tensor | None, *shape: int, dtype: torch.dtype) -> torch.Tensor:
        """Draws ``[len(rows), *shape]`` (``rows`` None: every row)."""
        if self.per_row:
            index = range(self.batch) if rows is None else rows.tolist()
            draws = [torch.rand(shape, device=self.device, dtype=dtype, generator=self.generator[r]) for r in index]
            return torch.stack(draws)
        count = self.batch if rows is None else len(rows)
        return torch.rand((count, *shape), device=self.device, dtype=dtype, generator=self.generator)


def _propose(logits: torch.Tensor, temperature: float, noise: _Noise, rows: torch.Tensor | None) -> torch.Tensor:
    """Proposed tokens: greedy at temperature 0, else Gumbel-max samples from softmax(logits / T)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    uniform = noise.uniform(rows, *logits.shape[1:], dtype=logits.dtype)
    gumbel = -torch.log(-torch.log(uniform.clamp_min(1e-300)))
    return (logits / temperature + gumbel).argmax(dim=-1)


def _confidence(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token], without materialising the full log-softmax."""
    return logits.gather(-1, tokens[..., None]).squeeze(-1) - logits.logsumexp(dim=-1)


def _threshold_commit(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    masked: torch.Tensor,
    remasking: Remasking,
    threshold: float,
    noise: _Noise,
    rows: torch.Tensor | None,
) -> torch.Tensor:
    """Which block positions ``[n, B]`` a threshold round commits (see the module docstring); every row has a masked
    position."""
    log_tau = math.log(threshold)
    if remasking == "low_confidence":
        confidence = _confidence(logits, tokens).masked_fill(~masked, -math.inf)
        commit = confidence > log_tau
        return commit.scatter(1, confidence.topk(1, dim=1).indices, True)
    peak = logits.max(dim=-1).values - logits.logsumexp(dim=-1)  # log of the largest probability
    confident = masked & (peak > log_tau)
    keys = noise.uniform(rows, masked.shape[1], dtype=logits.dtype).masked_fill(~masked, -math.inf)
    order = keys.argsort(dim=1, descending=True)  # a uniformly random order of the masked positions first
    run = confident.gather(1, order)[:, 1:].long().cumprod(dim=1).sum(dim=1)  # confident ones after the first
    rank = torch.arange(masked.shape[1], device=masked.device)
    return torch.zeros_like(masked).scatter(1, order, rank[None, :] <= run[:, None])


class KVStore:
    """Per layer, the keys and values ``[B, heads, n, head_dim]`` of the positions a cached round does not recompute,
    as the last refresh left them, for every row of the batch."""

    def __init__(self) -> None:
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []

    def write(self, cache: DynamicCache, rows: torch.Tensor | None, keep: list[slice]) -> None:
        """Store the ``keep`` positions of a refresh's cache (of ``rows``; None: every row)."""
        fresh = [
            (torch.cat([layer.keys[:, :, s] for s in keep], dim=2), torch.cat([layer.values[:, :, s] for s in keep], 2))
            for layer in cache.layers
        ]
        if rows is None:
            self.layers = fresh
            return
        for (keys, values), (new_keys, new_values) in zip(self.layers, fresh, strict=True):
            keys[rows], values[rows] = new_keys, new_values

    def read(self, rows: torch.Tensor | None) -> DynamicCache:
        """A cache holding the stored keys and values of ``rows`` (the model appends its new ones to it)."""
        cache = DynamicCache()
        for index, (keys, values) in enumerate(self.layers):
            cache.update(keys if rows is None else keys[rows], values if rows is None else values[rows], index)
        return cache


def decode_logits(
    model: LogitsFn,
    x: torch.Tensor,
    attention_mask: torch.Tensor | None,
    start: int,
    block_length: int,
    cache: KVCache,
    store: KVStore,
    refresh: bool,
    rows: torch.Tensor | None,
) -> tuple[torch.Tensor, int]:
    """Logits ``[n, block_length, V]`` of the block at ``start`` for ``rows`` (None: every row) and the number of
    positions each row ran through the model.

    Without a cache, or at a refresh, the model runs on the whole sequence (a refresh also stores the keys and values of
    the positions outside the block, or before it for ``prefix``). Otherwise it runs on the positions after the prefix
    (``prefix``) or on the block alone (``dual``) against the stored keys and values.
    """
    if rows is not None:
        x = x[rows]
        attention_mask = None if attention_mask is None else attention_mask[rows]
    batch, length = x.shape
    stop = start + block_length
    if cache == "none" or refresh:
        select = torch.zeros(batch, length, dtype=torch.bool, device=x.device)
        select[:, start:stop] = True
        if cache == "none":
            logits = model(x, attention_mask=attention_mask, select=select)
        else:
            filled = DynamicCache()
            logits = model(x, attention_mask=attention_mask, select=select, past_key_values=filled)
            keep = [slice(0, start)] + ([slice(stop, length)] if cache == "dual" else [])
            store.write(filled, rows, keep)
        return logits.view(batch, block_length, -1), length
    if cache == "prefix":
        select = torch.zeros(batch, length - start, dtype=torch.bool, device=x.device)
        select[:, :block_length] = True
        logits = model(x[:, start:], attention_mask=attention_mask, select=select, past_key_values=store.read(rows))
        return logits.view(batch, block_length, -1), length - start
    if attention_mask is not None:  # keys are ordered [prefix, suffix, block]
        attention_mask = torch.cat(
            [attention_mask[:, :start], attention_mask[:, stop:], attention_mask[:, start:stop]], 1
        )
    positions = torch.arange(start, stop, device=x.device).expand(batch, block_length)
    logits = model(
        x[:, start:stop],
        attention_mask=attention_mask,
        select=torch.ones(batch, block_length, dtype=torch.bool, device=x.device),
        position_ids=positions,
        past_key_values=store.read(rows),
    )
    return logits.view(batch, block_length, -1), block_length


def check_decoding(gen_length: int, block_length: int, steps: int, **settings: Any) -> None:
    """ValueError naming the first bad decoding setting, without a model: the rules of
    :func:`dtm.config.sampling.decoding_problem` (``settings``: its keyword arguments temperature, remasking,
    threshold, cache and cache_refresh), which :func:`generate` checks too."""
    _raise(decoding_problem(gen_length, block_length, steps, **settings))


def check_cache_support(model: LogitsFn, cache: KVCache) -> None:
    """ValueError unless ``model`` can decode with ``cache``: its forward takes ``past_key_values`` (a transformers
    cache) and ``position_ids``, and the model agrees (:meth:`dtm.models.DiffusionLM.check_kv_cache`)."""
    if cache == "none":
        return
    parameters = inspect.signature(getattr(model, "forward", model)).parameters
    missing = [name for name in ("past_key_values", "position_ids") if name not in parameters]
    if missing:
        raise ValueError(
            f"cache={cache!r} needs a model whose forward takes {' and '.join(missing)} (e.g. dtm.models.DiffusionLM "
            f"wrapping a transformers model with a key/value cache); {type(model).__name__} does not"
        )
    check = getattr(model, "check_kv_cache", None)
    if check is not None:
        check()


@torch.no_grad()
def generate(
    model: LogitsFn,
    prompt_ids: torch.Tensor,
    gen_length: int,
    block_length: int,
    steps: int,
    *,
    mask_token_id: int,
    temperature: float = 0.0,
    remasking: Remasking = "low_confidence",
    attention_mask: torch.Tensor | None = None,
    generator: Generators = None,
    threshold: float | None = None,
    cache: KVCache = "none",
    cache_refresh: int = 0,
    stats: DecodeStats | None = None,
) -> torch.Tensor:
    """Decode ``gen_length`` tokens after each (left-padded) prompt; return ``[B, P + gen_length]`` token ids.

    ``model(input_ids, attention_mask=..., select=...)`` must return logits for the selected positions (see
    :class:`dtm.models.DiffusionLM`). ``attention_mask`` marks real prompt tokens (1) and padding (0); response
    positions are always attended. ``generator`` is one generator for the batch or one per row (see :class:`_Noise`).

    ``threshold`` switches from the fixed schedule (``steps`` rounds in all) to confidence-threshold parallel
    decoding (``steps`` is then unused); ``cache`` = ``"prefix"`` or ``"dual"`` reuses keys and values within a block,
    refreshed at block starts and every ``cache_refresh`` rounds (1: every round, exact); see the module docstring.
    The model must then take ``past_key_values`` and ``position_ids``. ``stats``, if given, accumulates each row's
    decoding cost.
    """
    check_decoding(
        gen_length,
        block_length,
        steps,
        temperature=temperature,
        remasking=remasking,
        threshold=threshold,
        cache=cache,
        cache_refresh=cache_refresh,
    )
    check_cache_support(model, cache)
    batch, prompt_len = prompt_ids.shape
    device = prompt_ids.device
    noise = _Noise(generator, batch, device)
    num_blocks = check_blocks(gen_length, block_length)
    schedule = steps_per_block(gen_length, block_length, steps) if threshold is None else None

    x = torch.full((batch, prompt_len + gen_length), mask_token_id, dtype=prompt_ids.dtype, device=device)
    x[:, :prompt_len] = prompt_ids
    if attention_mask is not None:
        ones = torch.ones(batch, gen_length, dtype=attention_mask.dtype, device=device)
        attention_mask = torch.cat([attention_mask, ones], dim=1)

    for block in range(num_blocks):
        start = prompt_len + block * block_length
        block_x = x[:, start : start + block_length]
        counts = None if schedule is None else tokens_per_step(block_length, schedule[block])
        store = KVStore()
        round_ = 0
        while True:
            rows = None
            if counts is None:
                pending = (block_x == mask_token_id).any(dim=1)
                if not pending.any():
                    break
                rows = None if pending.all() else pending.nonzero().squeeze(1)
            elif round_ == len(counts):
                break
            refresh = round_ == 0 or (cache_refresh > 0 and round_ % cache_refresh == 0)
            logits, queries = decode_logits(model, x, attention_mask, start, block_length, cache, store, refresh, rows)
            if stats is not None:
                stats.add(rows, queries, x.shape[1], block_length)
            logits[..., mask_token_id] = float("-inf")
            logits = logits.double()
            tokens = _propose(logits, temperature, noise, rows)
            if counts is not None:
                if remasking == "random":
                    confidence = noise.uniform(rows, block_length, dtype=logits.dtype)
                else:
                    confidence = _confidence(logits, tokens)
                confidence = confidence.masked_fill(block_x != mask_token_id, float("-inf"))
                chosen = confidence.topk(counts[round_], dim=1).indices
                block_x.scatter_(1, chosen, tokens.gather(1, chosen))
            else:
                current = block_x if rows is None else block_x[rows]
                masked = current == mask_token_id
                commit = _threshold_commit(logits, tokens, masked, remasking, threshold, noise, rows)
                updated = torch.where(commit, tokens, current)
                if rows is None:
                    block_x.copy_(updated)
                else:
                    block_x[rows] = updated
            round_ += 1
    return x
