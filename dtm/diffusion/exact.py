"""Exact laws of SAR decoding: the probability that the sampler produces a given response, summed over every order
in which it can reveal the positions.

A response x of length G is decoded in blocks of B positions, left to right; inside block b round j commits k_j of the
block's masked positions (:func:`dtm.diffusion.sampler.tokens_per_step`). Let S be the set of block positions already
revealed (holding x's tokens), with the earlier blocks clean and the later ones masked. Round j moves from S
(|S| = k_1 + ... + k_{j-1}) to S u T (|T| = k_j) and commits x's tokens at T with probability

    random:          P(T, x_T | S) = prod_{i in T} pi(x_i | S) / C(m, k_j)                         (m = B - |S|)
    low_confidence:  P(T, x_T | S) = prod_{i in T} pi(x_i | S) * prod_{l masked, l not in T} F_l(min_{i in T} c_i(x_i))

where pi = softmax(logits / temperature) with the mask token excluded (one-hot at the argmax for temperature 0), c =
log softmax(logits) is the sampler's confidence, and F_l(c) = P_{u ~ pi_l}(c_l(u) < c) (confidence ties between
positions are ignored: they have probability 0 unless two logits coincide exactly). A forward DP over the revealed
sets gives the block's probability,

    g({}) = 1,   g(S u T) += g(S) P(T, x_T | S),   P_b(x) = g(whole block),   P(x) = prod_b P_b(x),

with one forward pass per reachable set S: sum_j C(B, k_1 + ... + k_{j-1}) states per block (2^B - 1 for one token per
round), so it is feasible for small blocks only (:data:`MAX_EXACT_BLOCK`).

For random order the reveal order does not depend on the tokens, and

    elbo(x) = sum_b sum_j E_{(S, T) uniform} [ sum_{i in T} log pi(x_i | S) ]  <=  log P(x)      (Jensen)

is the evidence lower bound that the masked-diffusion and DTM losses estimate on SAR states (one token per round:
E_{SAR state}[mean over the active block's masked positions of -log pi(x_i | x_t)] = -elbo(x) / G).

**Threshold decoding** (``threshold`` = tau): rounds are not counted, and the DP runs over all (S, T) pairs with
T a non-empty subset of the m masked positions (3^B pairs per block). With C the confident masked positions
(max_v pi(v | S) > tau, from the untempered logits) and k = |T|:

    random:          P(T, x_T | S) = prod_{i in T} pi(x_i | S)
                                     * sum_{s in T, T - {s} in C} (k-1)! (m-k)! / m! * (n_s / (m - k) if k < m else 1)

where n_s counts the unconfident masked positions other than s: a uniform order starts with s, continues with the other
k - 1 positions of T (all confident) in any order, then meets an unconfident one (or the block's end).

    low_confidence:  every i in T has c_i(x_i) > log tau:  prod_{i in T} pi(x_i | S) prod_{l not in T} F_l(<= log tau)
                     T = {i} with c_i(x_i) <= log tau:     pi(x_i | S) prod_{l not in T} F_l(< c_i(x_i))

and 0 otherwise (several positions are committed only if all are confident; an unconfident one only alone, as the
best).

**Key/value caches** (``cache`` = ``prefix`` or ``dual``, refreshed at block starts only): the logits of every state
but the block's first are those of a cached call whose stored keys and values come from the block's first state (all
of the block masked), computed by the sampler's own :func:`dtm.diffusion.sampler.decode_logits`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import torch

from dtm.config.choices import KVCache
from dtm.config.sampling import MAX_EXACT_BLOCK, MAX_THRESHOLD_BLOCK
from dtm.diffusion.sampler import (
    KVStore,
    LogitsFn,
    Remasking,
    check_blocks,
    check_decoding,
    decode_logits,
    steps_per_block,
    tokens_per_step,
)


@dataclass
class SequenceLaw:
    """Per response: ``log_prob`` = log P(x) under the sampler, and ``elbo`` (random order; NaN for
    ``low_confidence``, whose order depends on the tokens). Both ``[N]`` float64."""

    log_prob: torch.Tensor
    elbo: torch.Tensor


@dataclass(frozen=True)
class _Transition:
    """Round j of a block: from revealed set ``source`` (bitmask) commit the positions ``chosen``."""

    source: int
    chosen: tuple[int, ...]

    @property
    def target(self) -> int:
        return self.source | sum(1 << i for i in self.chosen)


def _block_rounds(block_length: int, rounds: int) -> list[list[_Transition]]:
    """Every (revealed set, committed set) pair of each round of one block."""
    out, revealed = [], 0
    for count in tokens_per_step(block_length, rounds):
        round_pairs = []
        for source in combinations(range(block_length), revealed):
            free = [i for i in range(block_length) if i not in source]
            mask = sum(1 << i for i in source)
            round_pairs += [_Transition(mask, chosen) for chosen in combinations(free, count)]
        out.append(round_pairs)
        revealed += count
    return out


def _state_ids(
    prompt_ids: torch.Tensor, responses: torch.Tensor, start: int, block_length: int, subsets: list[int], mask_id: int
) -> torch.Tensor:
    """``[N, len(subsets), P + G]`` inputs: earlier blocks clean, the block at ``start`` revealed on each subset,
    everything else masked."""
    batch, length = responses.shape
    position = torch.arange(length)
    bits = torch.tensor(subsets)[:, None] >> (position - start).clamp(0, block_length - 1)[None, :] & 1
    in_block = (position >= start) & (position < start + block_length)
    keep = (position < start)[None, :] | (in_block[None, :] & bits.bool())  # [S, G]
    response = torch.where(keep[None], responses[:, None, :], torch.full_like(responses[:, None, :], mask_id))
    prompts = prompt_ids[:, None, :].expand(batch, len(subsets), prompt_ids.shape[1])
    return torch.cat([prompts, response], dim=2)


@torch.no_grad()
def _block_logits(
    model: LogitsFn,
    ids: torch.Tensor,
    attention: torch.Tensor | None,
    start: int,
    block_length: int,
    batch_size: int,
) -> torch.Tensor:
    """Logits ``[N, S, B, V]`` at the block's positions for every state in ``ids`` ``[N, S, L]``; ``attention``
    ``[N, P]`` covers the prompts. Each distinct state (ids and attention mask) runs once."""
    batch, states, length = ids.shape
    rows = ids.reshape(-1, length)
    mask_rows = torch.ones_like(rows)
    if attention is not None:  # prompt padding; response positions are always attended
        mask_rows[:, : attention.shape[1]] = attention.repeat_interleave(states, dim=0)
    unique, inverse = torch.unique(torch.cat([rows, mask_rows], dim=1), dim=0, return_inverse=True)
    device = _device(model)
    select = torch.zeros(1, length, dtype=torch.bool)
    select[:, start : start + block_length] = True
    outs = []
    for chunk in unique.split(batch_size):
        x, m = chunk[:, :length].to(device), chunk[:, length:].to(device)
        logits = model(x, attention_mask=m, select=select.expand(len(chunk), length).to(device))
        outs.append(logits.view(len(chunk), block_length, -1).double().cpu())
    return torch.cat(outs)[inverse].view(batch, states, block_length, -1)


@torch.no_grad()
def _cached_block_logits(
    model: LogitsFn,
    ids: torch.Tensor,
    attention: torch.Tensor | None,
    start: int,
    block_length: int,
    batch_size: int,
    cache: KVCache,
) -> torch.Tensor:
    """Like :func:`_block_logits`, as the sampler with ``cache`` computes them: state 0 (the block all masked) by a
    full pass that fills the cache, every other state by a cached call against it."""
    batch, states, length = ids.shape
    device = _device(model)
    outs = []
    for rows in torch.arange(batch).split(batch_size):
        mask = None
        if attention is not None:
            mask = torch.ones(len(rows), length, dtype=attention.dtype)
            mask[:, : attention.shape[1]] = attention[rows]
            mask = mask.to(device)
        store = KVStore()
        per_state = []
        for state in range(states):
            x = ids[rows, state].to(device)
            logits, _ = decode_logits(model, x, mask, start, block_length, cache, store, state == 0, None)
            per_state.append(logits.double().cpu())
        outs.append(torch.stack(per_state, dim=1))
    return torch.cat(outs)


def _device(model: LogitsFn) -> torch.device:
    parameter = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    return torch.device("cpu") if parameter is None else parameter.device


def _proposal_log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """log pi: the sampler's proposal distribution (mask token already at -inf in ``logits``)."""
    if temperature == 0:
        best = logits.argmax(dim=-1, keepdim=True)
        return torch.full_like(logits, -math.inf).scatter(-1, best, 0.0)
    return (logits / temperature).log_softmax(dim=-1)


def _below(log_pi: torch.Tensor, confidence: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """log F(c) = log P_{u ~ pi}(confidence(u) < c) per position: ``log_pi``, ``confidence`` ``[..., V]``,
    ``threshold`` ``[...]``."""
    below = confidence < threshold[..., None]
    return log_pi.masked_fill(~below, -math.inf).logsumexp(dim=-1)


def sequence_log_probs(
    model: LogitsFn,
    prompt_ids: torch.Tensor,
    responses: torch.Tensor,
    block_length: int,
    steps: int,
    *,
    mask_token_id: int,
    temperature: float = 1.0,
    remasking: Remasking = "random",
    attention_mask: torch.Tensor | None = None,
    batch_size: int = 1024,
    threshold: float | None = None,
    cache: KVCache = "none",
    cache_refresh: int = 0,
) -> SequenceLaw:
    """Exact log P(x) of each response under :func:`dtm.diffusion.sampler.generate` with these settings (see the
    module docstring), and its ELBO for random order with the fixed schedule (NaN otherwise).

    ``prompt_ids`` ``[N, P]`` (left-padded, with ``attention_mask``), ``responses`` ``[N, G]``; ``model`` as for the
    sampler. A response holding the mask token has probability 0. Raises ValueError for blocks longer than
    :data:`MAX_EXACT_BLOCK` (2^B states per block; :data:`MAX_THRESHOLD_BLOCK` with a threshold, 3^B transitions),
    and for a cache refreshed inside a block (``cache_refresh`` > 1: the state would hold the last refresh).
    """
    gen_length = responses.shape[1]
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
    if cache_refresh == 1:
        cache = "none"  # a refresh every round is the uncached sampler
    elif cache_refresh != 0:
        raise ValueError(
            f"the exact law covers caches refreshed at block starts (cache_refresh 0 or 1), got {cache_refresh}"
        )
    limit = MAX_EXACT_BLOCK if threshold is None else MAX_THRESHOLD_BLOCK
    if block_length > limit:
        raise ValueError(
            f"block_length {block_length}: the exact law enumerates the revealed sets of a block; at most {limit} is "
            "supported" + ("" if threshold is None else " with a threshold")
        )
    num_blocks = check_blocks(gen_length, block_length)
    schedule = steps_per_block(gen_length, block_length, steps) if threshold is None else None
    batch, prompt_len = prompt_ids.shape
    log_prob = torch.zeros(batch, dtype=torch.float64)
    elbo = torch.zeros(batch, dtype=torch.float64)
    for block in range(num_blocks):
        start = block * block_length
        if schedule is None:
            pairs = None
            subsets = list(range((1 << block_length) - 1))
        else:
            pairs = _block_rounds(block_length, schedule[block])
            subsets = sorted({t.source for round_pairs in pairs for t in round_pairs})
        ids = _state_ids(prompt_ids, responses, start, block_length, subsets, mask_token_id)
        if cache == "none":
            logits = _block_logits(model, ids, attention_mask, prompt_len + start, block_length, batch_size)
        else:
            logits = _cached_block_logits(
                model, ids, attention_mask, prompt_len + start, block_length, batch_size, cache
            )
        logits[..., mask_token_id] = -math.inf
        log_pi = _proposal_log_probs(logits, temperature)  # [N, S, B, V]
        targets = responses[:, start : start + block_length]
        target_index = targets[:, None, :, None].expand(batch, len(subsets), block_length, 1)
        log_pi_x = log_pi.gather(-1, target_index).squeeze(-1)  # [N, S, B]
        if pairs is None:
            log_prob += _threshold_block(logits, log_pi, log_pi_x, target_index, remasking, threshold)
            continue
        block_log_prob, block_elbo = _scheduled_block(logits, log_pi, log_pi_x, targets, pairs, subsets, remasking)
        log_prob += block_log_prob
        elbo += block_elbo
    if remasking == "low_confidence" or threshold is not None:
        elbo = torch.full_like(elbo, math.nan)
    return SequenceLaw(log_prob, elbo)


def _scheduled_block(
    logits: torch.Tensor,
    log_pi: torch.Tensor,
    log_pi_x: torch.Tensor,
    targets: torch.Tensor,
    pairs: list[list[_Transition]],
    subsets: list[int],
    remasking: Remasking,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log P_b(x) and the block's ELBO term under the fixed schedule: the DP over rounds."""
    batch, _, block_length = log_pi_x.shape
    rows = torch.arange(batch)
    index = {s: k for k, s in enumerate(subsets)}
    confidence = logits.log_softmax(dim=-1) if remasking == "low_confidence" else None
    elbo = torch.zeros(batch, dtype=torch.float64)
    g = {0: torch.zeros(batch, dtype=torch.float64)}
    for round_pairs in pairs:
        terms: dict[int, list[torch.Tensor]] = {}
        round_elbo = torch.zeros(batch, dtype=torch.float64)
        for t in round_pairs:
            s = index[t.source]
            chosen = list(t.chosen)
            committed = log_pi_x[:, s, chosen].sum(dim=1)
            if confidence is None:
                free = block_length - bin(t.source).count("1")
                step = committed - math.log(math.comb(free, len(chosen)))
                round_elbo += committed / len(round_pairs)
            else:
                x_conf = confidence[rows[:, None], s, chosen, targets[:, chosen]]  # [N, k]
                others = [i for i in range(block_length) if not (t.source >> i & 1) and i not in chosen]
                threshold = x_conf.min(dim=1).values[:, None].expand(batch, len(others))
                beaten = _below(log_pi[:, s, others], confidence[:, s, others], threshold)
                step = committed + beaten.sum(dim=1)
            terms.setdefault(t.target, []).append(g[t.source] + step)
        g = {target: torch.stack(parts).logsumexp(dim=0) for target, parts in terms.items()}
        elbo += round_elbo
    return g[(1 << block_length) - 1], elbo


def _threshold_block(
    logits: torch.Tensor,
    log_pi: torch.Tensor,
    log_pi_x: torch.Tensor,
    target_index: torch.Tensor,
    remasking: Remasking,
    threshold: float,
) -> torch.Tensor:
    """log P_b(x) under threshold decoding: the DP over every (revealed set, committed set) pair (state s of the
    ``[N, S, ...]`` tensors is the revealed set with bitmask s)."""
    batch, _, block_length = log_pi_x.shape
    log_tau = math.log(threshold)
    confidence = logits.log_softmax(dim=-1)  # the sampler's confidence: untempered
    if remasking == "random":
        confident = confidence.amax(dim=-1) > log_tau  # [N, S, B]
    else:
        x_conf = confidence.gather(-1, target_index).squeeze(-1)  # [N, S, B]
        not_above = log_pi.masked_fill(confidence > log_tau, -math.inf).logsumexp(dim=-1)  # log P(c(u) <= log tau)
    full = (1 << block_length) - 1
    g = {0: torch.zeros(batch, dtype=torch.float64)}
    for source in sorted(range(full), key=lambda bits: bin(bits).count("1")):
        free = [i for i in range(block_length) if not source >> i & 1]
        m = len(free)
        for k in range(1, m + 1):
            for chosen in combinations(free, k):
                others = [i for i in free if i not in chosen]
                committed = log_pi_x[:, source, list(chosen)].sum(dim=1)
                if remasking == "random":
                    step = committed + _run_probability(confident[:, source], free, chosen).log()
                else:
                    above = x_conf[:, source, list(chosen)] > log_tau  # [N, k]
                    step = torch.where(above.all(dim=1), committed + not_above[:, source, others].sum(dim=1), -math.inf)
                    if k == 1:  # committed alone as the most confident position
                        best = x_conf[:, source, chosen[0]][:, None].expand(batch, len(others))
                        beaten = _below(log_pi[:, source, others], confidence[:, source, others], best)
                        step = torch.where(above[:, 0], step, committed + beaten.sum(dim=1))
                target = source | sum(1 << i for i in chosen)
                term = g[source] + step
                g[target] = torch.logaddexp(g[target], term) if target in g else term
    return g[full]


def _run_probability(confident: torch.Tensor, free: list[int], chosen: tuple[int, ...]) -> torch.Tensor:
    """P(a random-order threshold round commits exactly ``chosen``) per row ``[N]``: some s in ``chosen`` comes first
    in a uniform order of ``free``, the other chosen positions (all confident) follow, then an unconfident one."""
    m, k = len(free), len(chosen)
    unconfident = (~confident[:, free]).sum(dim=1).double()
    total = torch.zeros(confident.shape[0], dtype=torch.float64)
    orders = math.factorial(k - 1) * math.factorial(m - k) / math.factorial(m)
    for first in chosen:
        rest = [i for i in chosen if i != first]
        valid = confident[:, rest].all(dim=1).double() if rest else torch.ones_like(total)
        if k < m:
            stops = unconfident - (~confident[:, first]).double()  # unconfident positions other than the first
            total += valid * orders * stops / (m - k)
        else:
            total += valid * orders
    return total
