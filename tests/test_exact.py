"""Tests for dtm.diffusion.exact: the exact law of SAR decoding.

References: a brute-force enumeration that replays the sampler's own decision rule over every joint proposal of
every round (no DP over revealed sets), the empirical law of :func:`generate` itself, and an oracle model whose
posteriors are the exact conditionals of a known joint (random-order decoding then samples that joint exactly, and
the ELBO is tight).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dtm.diffusion.exact import MAX_EXACT_BLOCK, sequence_log_probs
from dtm.diffusion.sampler import generate, steps_per_block, tokens_per_step
from dtm.models import TinyModelConfig, build_tiny_model
from tests.shared import chi2_accepts

VOCAB, MASK = 4, 3  # tokens 0, 1, 2 and the mask
PROMPT = torch.tensor([[0, 2], [1, 1]])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = TinyModelConfig(
        vocab_size=VOCAB,
        mask_token_id=MASK,
        hidden_size=16,
        num_layers=2,
        num_heads=2,
        intermediate_size=32,
        max_length=16,
    )
    model = build_tiny_model(cfg).eval().double().requires_grad_(False)
    with torch.no_grad():  # context-dependent logits (the default init is nearly constant)
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.5)
    return model


def all_responses(length: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(MASK), repeat=length)))


def block_posterior(model, prompt, response: tuple, start: int, block_length: int, temperature: float):
    """The sampler's proposal pi and confidence (log-softmax of the logits) at the block's positions of one state, the
    mask token excluded."""
    x = torch.tensor([[*prompt, *response]])
    select = torch.zeros_like(x, dtype=torch.bool)
    select[0, len(prompt) + start : len(prompt) + start + block_length] = True
    logits = model(x, select=select).double()
    logits[:, MASK] = -math.inf
    if temperature == 0:
        pi = torch.nn.functional.one_hot(logits.argmax(-1), VOCAB).double()
    else:
        pi = (logits / temperature).softmax(-1)
    return pi, logits.log_softmax(-1)


def brute_force_law(model, prompt, gen_length, block_length, steps, temperature, remasking) -> dict[tuple, float]:
    """Replay the sampler: at each round enumerate every proposal of every masked block position (probability
    prod pi(u)), then the positions the sampler commits (random: each k-subset equally likely; low_confidence: the
    top-k confidences), recursively until the response is complete."""
    law: dict[tuple, float] = {}
    schedule = steps_per_block(gen_length, block_length, steps)

    def decode(response: tuple, block: int, round_: int, prob: float) -> None:
        if prob == 0:
            return
        if block == len(schedule):
            law[response] = law.get(response, 0.0) + prob
            return
        counts = tokens_per_step(block_length, schedule[block])
        if round_ == len(counts):
            decode(response, block + 1, 0, prob)
            return
        start = block * block_length
        pi, confidence = block_posterior(model, prompt, response, start, block_length, temperature)
        masked = [i for i in range(block_length) if response[start + i] == MASK]
        k = counts[round_]
        children: dict[tuple, float] = {}  # the same committed tokens reached by different proposals
        for proposal in itertools.product(range(MASK), repeat=len(masked)):
            p_proposal = math.prod(float(pi[i, u]) for i, u in zip(masked, proposal, strict=True))
            if remasking == "random":
                choices = [(c, 1 / math.comb(len(masked), k)) for c in itertools.combinations(range(len(masked)), k)]
            else:
                conf = torch.tensor([float(confidence[i, u]) for i, u in zip(masked, proposal, strict=True)])
                choices = [(tuple(conf.topk(k).indices.tolist()), 1.0)]
            for chosen, p_choice in choices:
                new = list(response)
                for c in chosen:
                    new[start + masked[c]] = proposal[c]
                children[tuple(new)] = children.get(tuple(new), 0.0) + p_proposal * p_choice
        for child, p_child in children.items():
            decode(child, block, round_ + 1, prob * p_child)

    decode((MASK,) * gen_length, 0, 0, 1.0)
    return law


@pytest.mark.parametrize("remasking", ["random", "low_confidence"])
@pytest.mark.parametrize(
    ("gen_length", "block_length", "steps", "temperature"),
    [(4, 2, 4, 1.0), (4, 4, 4, 0.7), (4, 4, 2, 1.0), (4, 2, 2, 1.3), (6, 3, 4, 1.0), (4, 2, 4, 0.0)],
)
def test_law_matches_brute_force(model, remasking, gen_length, block_length, steps, temperature):
    responses = all_responses(gen_length)
    for prompt in PROMPT:
        prompts = prompt[None].expand(len(responses), -1)
        law = sequence_log_probs(
            model,
            prompts,
            responses,
            block_length,
            steps,
            mask_token_id=MASK,
            temperature=temperature,
            remasking=remasking,
        )
        probs = law.log_prob.exp()
        reference = brute_force_law(model, prompt.tolist(), gen_length, block_length, steps, temperature, remasking)
        expected = torch.tensor([reference.get(tuple(r), 0.0) for r in responses.tolist()], dtype=torch.float64)
        assert sum(reference.values()) == pytest.approx(1.0, abs=1e-12)
        assert float(probs.sum()) == pytest.approx(1.0, abs=1e-10)
        torch.testing.assert_close(probs, expected, atol=1e-12, rtol=1e-9)
        if remasking == "random":
            assert (law.elbo <= law.log_prob + 1e-9).all()
        else:
            assert law.elbo.isnan().all()


@pytest.mark.parametrize("remasking", ["random", "low_confidence"])
def test_law_matches_the_sampler(model, remasking):
    """20,000 draws of generate() against the exact law (TV noise at this size ~0.02); the other remasking's law is
    rejected by the same check, so it has power."""
    gen_length, block_length, steps = 4, 2, 4
    n = 20000
    prompts = PROMPT[:1].expand(n, -1)
    out = generate(
        model,
        prompts,
        gen_length,
        block_length,
        steps,
        mask_token_id=MASK,
        temperature=1.0,
        remasking=remasking,
        generator=torch.Generator().manual_seed(1),
    )[:, 2:]
    responses = all_responses(gen_length)
    index = (out * (MASK ** torch.arange(gen_length - 1, -1, -1))).sum(1)
    freq = torch.bincount(index, minlength=len(responses)).double() / n

    def law(mode: str) -> torch.Tensor:
        lp = sequence_log_probs(
            model,
            PROMPT[:1].expand(len(responses), -1),
            responses,
            block_length,
            steps,
            mask_token_id=MASK,
            remasking=mode,
        ).log_prob
        return lp.exp()

    other = "low_confidence" if remasking == "random" else "random"
    assert 0.5 * float((freq - law(remasking)).abs().sum()) < 0.03
    assert 0.5 * float((freq - law(other)).abs().sum()) > 0.06


class JointOracle(torch.nn.Module):
    """Posterior = the exact conditional of a fixed joint over the 3^4 responses (no prompt)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        scores = torch.randn(MASK**4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        self.joint = (1.5 * scores).softmax(-1)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, attention_mask=None, select=None):
        seqs = all_responses(4)
        agree = ((seqs[None] == x[:, None]) | (x[:, None] == MASK)).all(-1)  # [B, 81]
        weights = self.joint[None] * agree
        onehot = torch.nn.functional.one_hot(seqs, VOCAB).double()
        posterior = torch.einsum("bs,siv->biv", weights, onehot)
        posterior = posterior / posterior.sum(-1, keepdim=True)
        return posterior.clamp_min(1e-300).log()[select]


@pytest.mark.parametrize("block_length", [1, 2, 4])
def test_oracle_random_order_law_is_the_joint_and_elbo_is_tight(block_length):
    oracle = JointOracle(seed=block_length)
    responses = all_responses(4)
    law = sequence_log_probs(
        oracle, torch.zeros(len(responses), 0, dtype=torch.long), responses, block_length, 4, mask_token_id=MASK
    )
    torch.testing.assert_close(law.log_prob.exp(), oracle.joint, atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(law.elbo, law.log_prob, atol=1e-9, rtol=1e-9)


def test_oracle_low_confidence_law_is_not_the_joint():
    """Choosing the position by the sampled token's confidence biases the committed tokens, even with exact
    posteriors: the law differs from the joint, and still sums to one."""
    oracle = JointOracle(seed=0)
    responses = all_responses(4)
    law = sequence_log_probs(
        oracle,
        torch.zeros(len(responses), 0, dtype=torch.long),
        responses,
        4,
        4,
        mask_token_id=MASK,
        remasking="low_confidence",
    ).log_prob.exp()
    assert float(law.sum()) == pytest.approx(1.0, abs=1e-10)
    assert 0.5 * float((law - oracle.joint).abs().sum()) > 0.05


def test_padding_and_batching(model):
    """Left-padded prompts with an attention mask give the same law as the unpadded prompt (up to the float32
    rotary embedding), and chunked forwards (batch_size=1) the same as one batch."""
    responses = all_responses(4)[:20]
    plain = sequence_log_probs(model, PROMPT[:1].expand(20, -1), responses, 2, 4, mask_token_id=MASK).log_prob
    padded = torch.cat([torch.zeros(20, 2, dtype=torch.long), PROMPT[:1].expand(20, -1)], dim=1)
    attention = torch.cat([torch.zeros(20, 2, dtype=torch.long), torch.ones(20, 2, dtype=torch.long)], dim=1)
    with_pad = sequence_log_probs(model, padded, responses, 2, 4, mask_token_id=MASK, attention_mask=attention).log_prob
    chunked = sequence_log_probs(
        model, padded, responses, 2, 4, mask_token_id=MASK, attention_mask=attention, batch_size=1
    ).log_prob
    torch.testing.assert_close(with_pad, plain, atol=1e-6, rtol=1e-6)  # rotary angles are computed in float32
    torch.testing.assert_close(chunked, with_pad, atol=1e-12, rtol=1e-12)


def test_mask_token_in_a_response_has_probability_zero(model):
    responses = torch.tensor([[0, MASK, 1, 2]])
    law = sequence_log_probs(model, PROMPT[:1], responses, 2, 4, mask_token_id=MASK)
    assert law.log_prob.item() == -math.inf


def test_bad_arguments(model):
    responses = all_responses(4)[:1]
    with pytest.raises(ValueError, match="remasking"):
        sequence_log_probs(model, PROMPT[:1], responses, 2, 4, mask_token_id=MASK, remasking="entropy")
    with pytest.raises(ValueError, match="temperature"):
        sequence_log_probs(model, PROMPT[:1], responses, 2, 4, mask_token_id=MASK, temperature=-1)
    with pytest.raises(ValueError, match=f"at most {MAX_EXACT_BLOCK}"):
        sequence_log_probs(model, PROMPT[:1], torch.zeros(1, 16, dtype=torch.long), 16, 16, mask_token_id=MASK)
    with pytest.raises(ValueError, match="divide"):
        sequence_log_probs(model, PROMPT[:1], responses, 3, 4, mask_token_id=MASK)


# ----------------------------------------------------------------------------------------------------------
# Threshold decoding and key/value caches
# ----------------------------------------------------------------------------------------------------------


def brute_force_threshold_law(model, prompt, gen_length, block_length, temperature, remasking, threshold):
    """Replay threshold decoding: every joint proposal of the masked block positions, and for random order every
    permutation of them (each 1/m!), then the sampler's rule (random: the first position and the confident run after
    it; low_confidence: the confident positions and the best), recursively."""
    law: dict[tuple, float] = {}

    def commits(masked, proposal, confidence):
        """(committed indices into ``masked``, probability) pairs."""
        conf = [float(confidence[i, u]) for i, u in zip(masked, proposal, strict=True)]
        if remasking == "low_confidence":
            best = max(range(len(masked)), key=lambda j: conf[j])
            return [(tuple(j for j in range(len(masked)) if conf[j] > math.log(threshold) or j == best), 1.0)]
        peaks = [float(confidence[i].max()) > math.log(threshold) for i in masked]
        out = []
        for order in itertools.permutations(range(len(masked))):
            run = 1
            while run < len(order) and peaks[order[run]]:
                run += 1
            out.append((order[:run], 1 / math.factorial(len(masked))))
        return out

    def decode(response: tuple, prob: float) -> None:
        if prob == 0:
            return
        if MASK not in response:
            law[response] = law.get(response, 0.0) + prob
            return
        start = response.index(MASK) // block_length * block_length
        pi, confidence = block_posterior(model, prompt, response, start, block_length, temperature)
        masked = [i for i in range(block_length) if response[start + i] == MASK]
        children: dict[tuple, float] = {}
        for proposal in itertools.product(range(MASK), repeat=len(masked)):
            p_proposal = math.prod(float(pi[i, u]) for i, u in zip(masked, proposal, strict=True))
            for chosen, p_choice in commits(masked, proposal, confidence):
                new = list(response)
                for c in chosen:
                    new[start + masked[c]] = proposal[c]
                children[tuple(new)] = children.get(tuple(new), 0.0) + p_proposal * p_choice
        for child, p_child in children.items():
            decode(child, prob * p_child)

    decode((MASK,) * gen_length, 1.0)
    return law


def exact_law(model, responses, block_length, steps=4, prompt=PROMPT[:1], **kwargs) -> torch.Tensor:
    prompts = prompt.expand(len(responses), -1)
    return sequence_log_probs(model, prompts, responses, block_length, steps, mask_token_id=MASK, **kwargs).log_prob


@pytest.mark.parametrize("remasking", ["random", "low_confidence"])
@pytest.mark.parametrize(
    ("gen_length", "block_length", "temperature", "threshold"),
    [(4, 2, 1.0, 0.4), (4, 4, 1.0, 0.5), (4, 4, 0.7, 0.3), (4, 4, 1.0, 0.9), (4, 2, 0.0, 0.5), (3, 3, 1.3, 0.45)],
)
def test_threshold_law_matches_brute_force(model, remasking, gen_length, block_length, temperature, threshold):
    responses = all_responses(gen_length)
    for prompt in PROMPT:
        law = exact_law(
            model,
            responses,
            block_length,
            prompt=prompt[None],
            temperature=temperature,
            remasking=remasking,
            threshold=threshold,
        )
        reference = brute_force_threshold_law(
            model, prompt.tolist(), gen_length, block_length, temperature, remasking, threshold
        )
        expected = torch.tensor([reference.get(tuple(r), 0.0) for r in responses.tolist()], dtype=torch.float64)
        assert sum(reference.values()) == pytest.approx(1.0, abs=1e-12)
        assert float(law.exp().sum()) == pytest.approx(1.0, abs=1e-10)
        torch.testing.assert_close(law.exp(), expected, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("remasking", ["random", "low_confidence"])
def test_threshold_one_law_is_the_one_token_per_round_law(model, remasking):
    responses = all_responses(4)
    one_token = exact_law(model, responses, 2, steps=4, remasking=remasking)
    torch.testing.assert_close(exact_law(model, responses, 2, remasking=remasking, threshold=1.0), one_token)
    parallel = exact_law(model, responses, 2, remasking=remasking, threshold=0.4).exp()
    assert 0.5 * float((parallel - one_token.exp()).abs().sum()) > 1e-3  # a lower threshold does change the law


@pytest.fixture(scope="module")
def deep_model():
    """Three layers with context-dependent outputs: the stored keys and values of a cache go stale."""
    torch.manual_seed(0)
    cfg = TinyModelConfig(
        vocab_size=VOCAB, mask_token_id=MASK, hidden_size=32, num_layers=3, num_heads=2, intermediate_size=64
    )
    model = build_tiny_model(cfg).eval().double().requires_grad_(False)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.7)
    return model


def sampled_counts(model, prompt, block_length, n, **kwargs) -> torch.Tensor:
    out = generate(
        model,
        prompt.expand(n, -1),
        4,
        block_length,
        4,
        mask_token_id=MASK,
        temperature=1.0,
        generator=torch.Generator().manual_seed(2),
        **kwargs,
    )[:, prompt.shape[1] :]
    index = (out * (MASK ** torch.arange(3, -1, -1))).sum(1)
    return torch.bincount(index, minlength=MASK**4).double()


@pytest.mark.parametrize(
    ("which", "block_length", "kwargs"),
    [
        ("oracle", 4, {"remasking": "random", "threshold": 0.7}),
        ("oracle", 2, {"remasking": "random", "threshold": 0.4}),
        ("oracle", 4, {"remasking": "low_confidence", "threshold": 0.4}),
        ("deep", 2, {"remasking": "random", "cache": "prefix"}),
        ("deep", 2, {"remasking": "random", "cache": "dual"}),
        ("deep", 4, {"remasking": "random", "cache": "dual", "threshold": 0.5}),
        ("deep", 2, {"remasking": "low_confidence", "cache": "dual", "threshold": 0.5}),
    ],
)
def test_threshold_and_cached_laws_match_the_sampler(deep_model, which, block_length, kwargs):
    """20,000 draws of generate() pass a chi-square test against the exact law of the same settings and fail it
    against the law of the exact one-token random-order sampler (so the check has power). Threshold rules run on a
    model with exact posteriors of a joint with strong dependencies, caches on a three-layer model."""
    model, prompt = (
        (JointOracle(seed=3), torch.zeros(1, 0, dtype=torch.long)) if which == "oracle" else (deep_model, PROMPT[:1])
    )
    responses = all_responses(4)
    counts = sampled_counts(model, prompt, block_length, 20000, **kwargs)
    law = exact_law(model, responses, block_length, prompt=prompt, **kwargs).exp()
    assert float(law.sum()) == pytest.approx(1.0, abs=1e-10)
    assert chi2_accepts(counts, law)
    plain = exact_law(model, responses, block_length, prompt=prompt, remasking="random").exp()
    assert not chi2_accepts(counts, plain)


def test_exact_law_refuses_what_it_does_not_cover(model):
    responses = all_responses(4)[:1]
    with pytest.raises(ValueError, match="threshold"):
        exact_law(model, responses, 2, threshold=0.0)
    with pytest.raises(ValueError, match="cache_refresh 0 or 1"):
        exact_law(model, responses, 2, cache="dual", cache_refresh=2)
    with pytest.raises(ValueError, match="with a threshold"):
        sequence_log_probs(
            model, PROMPT[:1], torch.zeros(1, 12, dtype=torch.long), 12, 12, mask_token_id=MASK, threshold=0.5
        )
    refreshed = exact_law(model, all_responses(4), 4, cache="dual", cache_refresh=1)
    torch.testing.assert_close(refreshed, exact_law(model, all_responses(4), 4))


def test_threshold_random_law_of_exact_posteriors_stays_within_the_stated_bound():
    """With exact posteriors, each position a round commits beside the first moves the law by at most 2 (1 - tau) in
    expectation, so the whole response's TV to the joint is at most (G - 1) 2 (1 - tau). A joint whose tokens are
    each likely but strongly dependent (0000 with probability 0.93, 1111 with 0.05, the rest spread) makes parallel
    commits err: at tau = 0.9 every position is confident from the start; at 0.95 only once a token is known."""
    oracle = JointOracle(seed=5)
    responses = all_responses(4)
    joint = torch.full((len(responses),), 0.02 / (len(responses) - 2), dtype=torch.float64)
    joint[0], joint[sequence_index(torch.tensor([[1, 1, 1, 1]]))] = 0.93, 0.05
    oracle.joint = joint
    no_prompt = torch.zeros(1, 0, dtype=torch.long)
    distances = {}
    for tau in (0.6, 0.9, 0.95, 1.0):
        law = exact_law(oracle, responses, 4, prompt=no_prompt, remasking="random", threshold=tau).exp()
        distances[tau] = 0.5 * float((law - joint).abs().sum())
        assert distances[tau] <= 3 * 2 * (1 - tau) + 1e-9, (tau, distances[tau])
    assert distances[0.9] > 0.1  # parallel commits of dependent tokens do move the law
    assert distances[0.9] > distances[0.95] > distances[1.0] and distances[1.0] < 1e-9  # tau = 1 is exact


def sequence_index(responses: torch.Tensor) -> torch.Tensor:
    return (responses * MASK ** torch.arange(3, -1, -1)).sum(1)
