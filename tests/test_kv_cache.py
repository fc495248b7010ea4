"""Tests for key/value caching in SAR decoding (``generate(..., cache="prefix" | "dual")``).

What is exact and what is not, with bidirectional attention:
- A cached call is exact when the cache was filled from the same sequence: running ``x[:, start:]`` against the
  cached keys/values of ``x[:, :start]`` (prefix), or the block alone against those of the positions before and
  after it (dual), reproduces the full forward at those positions. This checks position ids, left padding, the order
  of keys and mask, and that attention with ``past_key_values`` stays bidirectional.
- A refresh round runs the full sequence, so with one round per block, or a refresh every round, the sampler is exact.
- In other rounds the stored keys/values are stale: from layer 2 on they depend on the block, which has changed since
  the last refresh. In a one-layer model they do not: a position's layer-1 key and value are a function of its own
  token and position only (embedding -> RMSNorm -> projection -> RoPE), and prefix and suffix tokens are never
  changed while a block is decoded. So a one-layer model makes either cache exact for any schedule, which tests
  everything but the staleness itself (the multi-layer test shows the staleness is real).
"""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from dtm.config.sampling import SamplingConfig
from dtm.diffusion.sampler import generate
from dtm.models import DiffusionLM, TinyModelConfig, build_tiny_model
from dtm.rollouts import rollout
from dtm.tasks.base import PromptBatch

VOCAB = 12
MASK_ID = 1


def make_model(num_layers: int, seed: int = 0) -> DiffusionLM:
    """A float64 tiny model with large weights, so that its outputs depend on the context (see test_sampler)."""
    torch.manual_seed(seed)
    cfg = TinyModelConfig(
        vocab_size=VOCAB,
        mask_token_id=MASK_ID,
        hidden_size=32,
        num_layers=num_layers,
        num_heads=4,
        intermediate_size=64,
    )
    model = build_tiny_model(cfg).eval().double()
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.3)
    return model


@pytest.fixture(scope="module")
def deep_model() -> DiffusionLM:
    return make_model(num_layers=3)


@pytest.fixture(scope="module")
def one_layer_model() -> DiffusionLM:
    return make_model(num_layers=1)


def padded_prompts(lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompts (ids avoid the mask token; padding holds arbitrary tokens) and their attention mask."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(2, VOCAB, (len(lengths), width), generator=g)
    attention_mask = torch.ones_like(ids)
    for row, n in enumerate(lengths):
        attention_mask[row, : width - n] = 0
    return ids, attention_mask


class CallRecorder(torch.nn.Module):
    """Delegates to a model and records, per call, the input length and the cache length before the call."""

    def __init__(self, model: DiffusionLM) -> None:
        super().__init__()
        self.model = model
        self.calls: list[tuple[int, int]] = []

    def forward(self, input_ids, attention_mask=None, select=None, past_key_values=None, position_ids=None):
        cached = past_key_values.get_seq_length() if past_key_values is not None else -1
        self.calls.append((input_ids.shape[1], cached))
        return self.model(
            input_ids,
            attention_mask=attention_mask,
            select=select,
            past_key_values=past_key_values,
            position_ids=position_ids,
        )


# ----------------------------------------------------------------------------------------------------------
# The model call with past_key_values
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("start", [0, 4, 9])
def test_cached_call_equals_full_forward_on_the_same_sequence(deep_model, start):
    """Keys/values of x[:, :start] from a full pass + a pass over x[:, start:] = the full forward's logits there."""
    ids, attention_mask = padded_prompts([7, 4, 2], seed=1)
    x = torch.cat([ids, torch.randint(2, VOCAB, (3, 8))], dim=1)
    mask = torch.cat([attention_mask, torch.ones(3, 8, dtype=torch.long)], dim=1)
    everything = torch.ones_like(x, dtype=torch.bool)
    with torch.no_grad():
        full = deep_model(x, attention_mask=mask)
        cache = DynamicCache()
        deep_model(x, attention_mask=mask, select=everything, past_key_values=cache)
        assert cache.get_seq_length() == x.shape[1]
        cache.crop(start - x.shape[1])
        assert cache.get_seq_length() == start
        suffix = deep_model(x[:, start:], attention_mask=mask, select=everything[:, start:], past_key_values=cache)
    torch.testing.assert_close(suffix.view(3, -1, VOCAB), full[:, start:], atol=1e-10, rtol=0)


@pytest.mark.parametrize(("start", "stop"), [(0, 4), (5, 9), (10, 15), (7, 8)])
def test_dual_cached_call_equals_full_forward_on_the_same_sequence(deep_model, start, stop):
    """Keys/values of every position but x[:, start:stop] from a full pass, ordered [before, after]; a pass over the
    block alone with its own position ids and the mask in that order = the full forward's logits there."""
    ids, attention_mask = padded_prompts([7, 4, 2], seed=1)
    x = torch.cat([ids, torch.randint(2, VOCAB, (3, 8))], dim=1)
    mask = torch.cat([attention_mask, torch.ones(3, 8, dtype=torch.long)], dim=1)
    length = x.shape[1]
    with torch.no_grad():
        full = deep_model(x, attention_mask=mask)
        filled = DynamicCache()
        deep_model(x, attention_mask=mask, select=torch.ones_like(x, dtype=torch.bool), past_key_values=filled)
        cache = DynamicCache()
        for index, layer in enumerate(filled.layers):
            keep = torch.cat([torch.arange(start), torch.arange(stop, length)])
            cache.update(layer.keys[:, :, keep], layer.values[:, :, keep], index)
        order = torch.cat([mask[:, :start], mask[:, stop:], mask[:, start:stop]], dim=1)
        block = deep_model(
            x[:, start:stop],
            attention_mask=order,
            select=torch.ones(3, stop - start, dtype=torch.bool),
            position_ids=torch.arange(start, stop).expand(3, -1),
            past_key_values=cache,
        )
    torch.testing.assert_close(block.view(3, -1, VOCAB), full[:, start:stop], atol=1e-10, rtol=0)


def test_cached_call_attends_to_later_positions(deep_model):
    """With past_key_values the new positions still attend to each other in both directions."""
    x = torch.randint(2, VOCAB, (2, 12), generator=torch.Generator().manual_seed(2))
    changed = x.clone()
    changed[:, -1] = (changed[:, -1] + 1 - 2) % (VOCAB - 2) + 2
    select = torch.ones(2, 7, dtype=torch.bool)
    logits = []
    with torch.no_grad():
        for seq in (x, changed):
            cache = DynamicCache()
            deep_model(x, select=torch.ones_like(x, dtype=torch.bool), past_key_values=cache)  # same prefix cache
            cache.crop(5 - 12)
            logits.append(deep_model(seq[:, 5:], select=select, past_key_values=cache).view(2, 7, VOCAB))
    # A causal suffix would leave every position before the changed last one unchanged.
    assert ((logits[1][:, :-1] - logits[0][:, :-1]).abs().amax(dim=-1) > 1e-6).all()


def test_no_cache_is_built_without_past_key_values(deep_model):
    """transformers models default to use_cache=True; the wrapper must switch it off (it costs a K/V copy)."""
    seen = []
    hook = deep_model.model.model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("use_cache")), with_kwargs=True
    )
    try:
        with torch.no_grad():
            x = torch.randint(2, VOCAB, (2, 6))
            deep_model(x, select=torch.ones_like(x, dtype=torch.bool))
    finally:
        hook.remove()
    assert seen == [False]


def test_shifted_logits_reject_a_cache(deep_model):
    shifted = DiffusionLM(deep_model.model, MASK_ID, shift_logits=True)
    x = torch.randint(2, VOCAB, (1, 4))
    with pytest.raises(ValueError, match="shifted logits"):
        shifted(x, select=torch.ones_like(x, dtype=torch.bool), past_key_values=DynamicCache())


# ----------------------------------------------------------------------------------------------------------
# The sampler
# ----------------------------------------------------------------------------------------------------------


def decode_both(model, ids, attention_mask, gen_length, block_length, steps, cache="prefix", cache_refresh=0, **kwargs):
    """(uncached, cached) outputs; sampling runs get identically seeded generators."""
    outs = []
    for option, refresh in (("none", 0), (cache, cache_refresh)):
        generator = torch.Generator().manual_seed(5)
        outs.append(
            generate(
                model,
                ids,
                gen_length,
                block_length,
                steps,
                mask_token_id=MASK_ID,
                attention_mask=attention_mask,
                generator=generator,
                cache=option,
                cache_refresh=refresh,
                **kwargs,
            )
        )
    return outs


CACHES = ["prefix", "dual"]


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize(("gen_length", "block_length"), [(12, 4), (12, 3), (8, 8)])
def test_one_round_per_block_is_exact(deep_model, gen_length, block_length, cache):
    """Every call is a block's first round (a full pass), so the cache changes nothing, even with three layers."""
    ids, attention_mask = padded_prompts([5, 3, 1, 4], seed=3)
    steps = gen_length // block_length
    plain, cached = decode_both(deep_model, ids, attention_mask, gen_length, block_length, steps, cache)
    assert torch.equal(plain, cached)


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize(
    ("gen_length", "block_length", "steps"),
    [(12, 12, 12), (12, 12, 5), (12, 4, 12), (12, 4, 7), (12, 3, 8)],
)
@pytest.mark.parametrize(
    ("temperature", "remasking"), [(0.0, "low_confidence"), (1.0, "low_confidence"), (1.0, "random")]
)
def test_one_layer_model_cache_is_exact(
    one_layer_model, gen_length, block_length, steps, temperature, remasking, cache
):
    """Keys/values of a one-layer model do not depend on other positions: cached decoding is exact.

    Covers a single block over the whole response and several blocks, left padding, greedy and sampled decoding.
    """
    ids, attention_mask = padded_prompts([5, 3, 1, 4], seed=4)
    plain, cached = decode_both(
        one_layer_model,
        ids,
        attention_mask,
        gen_length,
        block_length,
        steps,
        cache,
        temperature=temperature,
        remasking=remasking,
    )
    assert torch.equal(plain, cached)
    assert len({tuple(row.tolist()) for row in plain[:, ids.shape[1] :]}) > 1  # rows differ: not vacuous


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize(("temperature", "remasking"), [(0.0, "low_confidence"), (1.0, "random")])
def test_one_layer_model_cache_is_exact_with_threshold_decoding(one_layer_model, cache, temperature, remasking):
    """The same with confidence-threshold rounds, where rows leave the model calls as their block fills up (the
    stored keys and values are then read for the remaining rows only)."""
    ids, attention_mask = padded_prompts([5, 3, 1, 4, 2, 5], seed=8)
    plain, cached = decode_both(
        one_layer_model,
        ids,
        attention_mask,
        12,
        6,
        2,
        cache,
        temperature=temperature,
        remasking=remasking,
        threshold=0.3,
    )
    assert torch.equal(plain, cached)
    assert not (plain[:, ids.shape[1] :] == MASK_ID).any()


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize("threshold", [None, 0.3])
def test_multi_layer_cache_is_approximate_and_refreshing_every_round_is_exact(deep_model, cache, threshold):
    """The staleness is real: with three layers and several rounds per block the outputs differ somewhere (so the
    cached path is taken, which makes the one-layer test meaningful). Refreshing every round is exact."""
    ids, attention_mask = padded_prompts([5, 3, 1, 4, 2, 5], seed=4)
    kwargs = {"threshold": threshold}
    plain, cached = decode_both(deep_model, ids, attention_mask, 12, 12, 12, cache, **kwargs)
    assert not torch.equal(plain, cached)
    assert not (cached[:, ids.shape[1] :] == MASK_ID).any()
    plain, refreshed = decode_both(deep_model, ids, attention_mask, 12, 12, 12, cache, cache_refresh=1, **kwargs)
    assert torch.equal(plain, refreshed)


def record_calls(model, cache, cache_refresh=0, steps=9):
    recorder = CallRecorder(model)
    ids, attention_mask = padded_prompts([3, 2], seed=6)
    generate(
        recorder,
        ids,
        12,
        4,
        steps,
        mask_token_id=MASK_ID,
        attention_mask=attention_mask,
        cache=cache,
        cache_refresh=cache_refresh,
    )
    return recorder.calls


def test_prefix_cache_holds_the_prefix_and_never_grows(one_layer_model):
    """Block k's first round runs the whole sequence on an empty cache; later rounds run x[:, start:] on a cache of
    exactly ``start`` positions."""
    prompt_len, block_length, total = 3, 4, 15
    expected = []
    for block in range(3):
        start = prompt_len + block * block_length
        expected += [(total, 0)] + [(total - start, start)] * 2
    assert record_calls(one_layer_model, "prefix") == expected


def test_dual_cache_runs_the_block_alone(one_layer_model):
    """Dual: later rounds run the block's 4 positions against the 11 others."""
    expected = [(15, 0), (4, 11), (4, 11)] * 3
    assert record_calls(one_layer_model, "dual") == expected


@pytest.mark.parametrize(("cache_refresh", "full_rounds"), [(0, [0]), (1, [0, 1, 2, 3]), (2, [0, 2]), (3, [0, 3])])
def test_refresh_interval_decides_the_full_rounds(one_layer_model, cache_refresh, full_rounds):
    """12 steps over 3 blocks of 4: 4 rounds per block; full passes at round 0 and every ``cache_refresh`` rounds."""
    calls = record_calls(one_layer_model, "dual", cache_refresh, steps=12)
    assert len(calls) == 12
    for block in range(3):
        rounds = calls[4 * block : 4 * block + 4]
        assert [r for r, call in enumerate(rounds) if call == (15, 0)] == full_rounds
        assert all(call == (4, 11) for r, call in enumerate(rounds) if r not in full_rounds)


def test_default_path_does_not_use_a_cache(one_layer_model):
    recorder = CallRecorder(one_layer_model)
    ids, attention_mask = padded_prompts([3, 2], seed=6)
    generate(recorder, ids, 8, 4, 4, mask_token_id=MASK_ID, attention_mask=attention_mask)
    assert recorder.calls == [(11, -1)] * 4


@pytest.mark.parametrize("cache", CACHES)
def test_a_cache_needs_a_model_that_takes_past_key_values_and_position_ids(cache):
    def logits_only(x, attention_mask=None, select=None, past_key_values=None):
        return torch.zeros(int(select.sum()), VOCAB)

    with pytest.raises(ValueError, match="position_ids"):
        generate(logits_only, torch.zeros(1, 2, dtype=torch.long), 4, 2, 2, mask_token_id=MASK_ID, cache=cache)


class CacheLessLM(torch.nn.Module):
    """A model with its own forward signature and no transformers cache (as LLaDA's modeling code has)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, VOCAB)

    def forward(self, input_ids, attention_mask=None, past_key_values=None, use_cache=False):
        return type("Output", (), {"logits": self.embed(input_ids)})()


def test_wrapped_models_without_a_transformers_cache_are_refused_by_name(deep_model):
    model = DiffusionLM(CacheLessLM(), MASK_ID)
    with pytest.raises(ValueError, match=r"CacheLessLM\.forward takes no position_ids"):
        generate(model, torch.zeros(1, 2, dtype=torch.long), 4, 2, 2, mask_token_id=MASK_ID, cache="dual")
    out = generate(model, torch.zeros(1, 2, dtype=torch.long), 4, 2, 2, mask_token_id=MASK_ID)  # no cache: fine
    assert not (out[:, 2:] == MASK_ID).any()
    shifted = DiffusionLM(deep_model.model, MASK_ID, shift_logits=True)
    with pytest.raises(ValueError, match="shifted logits"):
        generate(shifted, torch.zeros(1, 2, dtype=torch.long), 4, 2, 2, mask_token_id=MASK_ID, cache="prefix")


@pytest.mark.parametrize("cache", CACHES)
def test_sampling_config_passes_the_cache_to_rollouts(one_layer_model, cache):
    ids, attention_mask = padded_prompts([4, 2, 3], seed=7)
    prompts = PromptBatch(ids, attention_mask, [{} for _ in range(3)])
    outs = []
    for option in ("none", cache):
        sampling = SamplingConfig(gen_length=8, block_length=4, decode_steps=8, temperature=0.0, cache=option)
        recorder = CallRecorder(one_layer_model)
        recorder.mask_token_id = MASK_ID
        outs.append(rollout(recorder, prompts, sampling))
        assert any(cached > 0 for _, cached in recorder.calls) == (option != "none")
    assert torch.equal(outs[0], outs[1])
