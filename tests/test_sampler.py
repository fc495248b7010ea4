"""Tests for dtm.diffusion.sampler: SAR decoding with fake models of known behaviour and the tiny model.

The strongest check is exactness: with an oracle model (the exact unmasking posterior of a known joint), one
token per round, random remasking and temperature 1, SAR decoding draws exact samples from the joint.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dtm.config import ConfigError
from dtm.config.sampling import SamplingConfig
from dtm.diffusion.sampler import generate, steps_per_block, tokens_per_step
from dtm.models import TinyModelConfig, build_tiny_model
from tests.shared import chi2_stat, chi2_threshold

VOCAB = 12
MASK_ID = 1


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    cfg = TinyModelConfig(
        vocab_size=VOCAB,
        mask_token_id=MASK_ID,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        intermediate_size=64,
    )
    # float64: batched and single-row greedy decoding cannot differ by rounding.
    model = build_tiny_model(cfg).eval().double()
    # The default init (std 0.02) gives nearly input-independent logits, and greedy decoding would emit one
    # token everywhere; larger weights make the output depend on the context, so row-by-row comparisons mean
    # something.
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.3)
    return model


def random_prompts(rows: int, length: int, seed: int) -> torch.Tensor:
    """Prompt ids that avoid the mask token."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB - 1, (rows, length), generator=g)
    return ids + (ids >= MASK_ID).long()


def expected_steps(gen_length: int, block_length: int, steps: int) -> list[int]:
    """Rounds per block: round r (0-based) goes to block r mod num_blocks; at most block_length per block."""
    num_blocks = gen_length // block_length
    return [min(len(range(k, steps, num_blocks)), block_length) for k in range(num_blocks)]


def expected_tokens(block_length: int, rounds: int) -> list[int]:
    """Tokens committed per round: token t (0-based) goes to round t mod rounds."""
    return [len(range(j, block_length, rounds)) for j in range(rounds)]


class RecordingModel:
    """Fake model: logits depend only on the position (a fixed table); every call's inputs are recorded."""

    def __init__(self, total_length: int, seed: int = 0, table: torch.Tensor | None = None):
        g = torch.Generator().manual_seed(seed)
        self.table = table if table is not None else 3 * torch.randn(total_length, VOCAB, generator=g)
        self.inputs: list[torch.Tensor] = []
        self.selects: list[torch.Tensor] = []
        self.masks: list[torch.Tensor | None] = []

    def __call__(self, x, attention_mask=None, select=None):
        self.inputs.append(x.clone())
        self.selects.append(select.clone())
        self.masks.append(None if attention_mask is None else attention_mask.clone())
        logits = self.table[None].expand(x.shape[0], -1, -1)
        return logits[select].clone()


def committed_response(x: torch.Tensor, prompt_len: int) -> torch.Tensor:
    return x[:, prompt_len:] != MASK_ID


# ----------------------------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gen_length", "block_length", "steps"),
    [(8, 4, 2), (8, 4, 3), (8, 4, 8), (8, 4, 20), (12, 4, 7), (12, 3, 5), (6, 6, 4), (5, 1, 5), (16, 16, 1)],
)
def test_schedules_match_reference(gen_length, block_length, steps):
    per_block = steps_per_block(gen_length, block_length, steps)
    assert per_block == expected_steps(gen_length, block_length, steps)
    assert sum(per_block) == min(steps, gen_length)
    for rounds in per_block:
        assert 1 <= rounds <= block_length
        counts = tokens_per_step(block_length, rounds)
        assert counts == expected_tokens(block_length, rounds)
        assert sum(counts) == block_length and min(counts) >= 1


BAD_SCHEDULES = [(8, 4, 1), (12, 2, 5), (8, 3, 8), (8, 0, 8)]


@pytest.mark.parametrize(("gen_length", "block_length", "steps"), BAD_SCHEDULES)
def test_schedule_rejects_bad_arguments(gen_length, block_length, steps):
    with pytest.raises(ValueError):
        steps_per_block(gen_length, block_length, steps)
    with pytest.raises(ValueError):
        generate(
            RecordingModel(2 + gen_length),
            random_prompts(1, 2, 0),
            gen_length,
            block_length,
            steps,
            mask_token_id=MASK_ID,
        )


def test_generate_rejects_bad_remasking_and_temperature():
    prompts = random_prompts(1, 2, 0)
    with pytest.raises(ValueError, match="remasking"):
        generate(RecordingModel(6), prompts, 4, 2, 2, mask_token_id=MASK_ID, remasking="top_k")
    with pytest.raises(ValueError, match="temperature"):
        generate(RecordingModel(6), prompts, 4, 2, 2, mask_token_id=MASK_ID, temperature=-0.1)


# ----------------------------------------------------------------------------------------------------------
# Structural properties, recorded call by call
# ----------------------------------------------------------------------------------------------------------


SCHEDULES = [(8, 4, 3), (8, 4, 8), (12, 4, 7), (8, 2, 4), (6, 6, 2), (8, 4, 16)]


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize(("gen_length", "block_length", "steps"), SCHEDULES)
def test_block_schedule_is_respected(gen_length, block_length, steps, remasking, temperature):
    prompt_len, rows = 3, 5
    prompts = random_prompts(rows, prompt_len, seed=steps)
    model = RecordingModel(prompt_len + gen_length, seed=gen_length + steps)
    out = generate(
        model,
        prompts,
        gen_length,
        block_length,
        steps,
        mask_token_id=MASK_ID,
        temperature=temperature,
        remasking=remasking,
        generator=torch.Generator().manual_seed(1),
    )
    assert out.shape == (rows, prompt_len + gen_length)
    assert torch.equal(out[:, :prompt_len], prompts)
    assert not (out[:, prompt_len:] == MASK_ID).any()

    per_block = expected_steps(gen_length, block_length, steps)
    assert len(model.inputs) == sum(per_block) == min(steps, gen_length)

    # The committed count before every call, and the block that call decodes, from the reference schedule.
    expected = []
    done = 0
    for block, rounds in enumerate(per_block):
        for count in expected_tokens(block_length, rounds):
            expected.append((block, done))
            done += count
    assert done == gen_length

    previous = None
    for call, (x, select) in enumerate(zip(model.inputs, model.selects, strict=True)):
        block, done = expected[call]
        start, stop = prompt_len + block * block_length, prompt_len + (block + 1) * block_length
        assert torch.equal(x[:, :prompt_len], prompts), f"call {call}: prompt changed"
        committed = committed_response(x, prompt_len)
        assert (committed.sum(dim=1) == done).all(), f"call {call}: committed {committed.sum(dim=1).tolist()}"
        # Earlier blocks are complete; later blocks untouched.
        assert committed[:, : start - prompt_len].all()
        assert not committed[:, stop - prompt_len :].any(), f"call {call}: a later block was committed early"
        expected_select = torch.zeros_like(x, dtype=torch.bool)
        expected_select[:, start:stop] = True
        assert torch.equal(select, expected_select)
        if previous is not None:
            # Committed tokens are never changed or re-masked.
            was = previous != MASK_ID
            assert torch.equal(x[was], previous[was])
        previous = x
    was = previous != MASK_ID
    assert torch.equal(out[was], previous[was])


def test_steps_not_multiple_of_blocks():
    """gen 8, block 4, steps 3: blocks get 2 and 1 rounds, 3 calls in total."""
    model = RecordingModel(8)
    out = generate(model, torch.zeros(2, 0, dtype=torch.long), 8, 4, 3, mask_token_id=MASK_ID)
    assert len(model.inputs) == 3
    counts = [int(committed_response(x, 0)[0].sum()) for x in model.inputs]
    assert counts == [0, 2, 4]
    assert not (out == MASK_ID).any()


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
def test_greedy_equals_positionwise_argmax_without_mask(remasking):
    prompt_len, gen_length = 2, 8
    model = RecordingModel(prompt_len + gen_length, seed=3)
    # Make the mask token the best logit at some response positions: it must never be proposed.
    model.table[prompt_len + 1, MASK_ID] = 100.0
    model.table[prompt_len + 6, MASK_ID] = 100.0
    prompts = random_prompts(4, prompt_len, seed=3)
    out = generate(
        model,
        prompts,
        gen_length,
        4,
        4,
        mask_token_id=MASK_ID,
        temperature=0.0,
        remasking=remasking,
        generator=torch.Generator().manual_seed(0),
    )
    table = model.table[prompt_len:].clone()
    table[:, MASK_ID] = -math.inf
    assert torch.equal(out[:, prompt_len:], table.argmax(dim=1).expand(4, -1))
    assert torch.equal(out[:, :prompt_len], prompts)


def test_low_confidence_commits_most_confident_first():
    """One token per round at temperature 0: each block commits by decreasing max probability."""
    gen_length, block_length = 8, 4
    g = torch.Generator().manual_seed(5)
    confidence_scale = torch.randperm(gen_length, generator=g).double() + 1.0
    table = torch.zeros(gen_length, VOCAB, dtype=torch.float64)
    top_token = (torch.arange(gen_length) % (VOCAB - 2)) + 2
    table[torch.arange(gen_length), top_token] = confidence_scale  # larger scale -> larger max probability
    # The mask token would be the most confident choice of all if it were not excluded.
    table[:, MASK_ID] = 50.0
    model = RecordingModel(gen_length, table=table)
    no_prompt = torch.zeros(1, 0, dtype=torch.long)
    out = generate(model, no_prompt, gen_length, block_length, gen_length, mask_token_id=MASK_ID)
    assert torch.equal(out[0], top_token)
    snapshots = [*model.inputs, out]
    order = []
    for before, after in itertools.pairwise(snapshots):
        new = ((before[0] == MASK_ID) & (after[0] != MASK_ID)).nonzero().flatten().tolist()
        assert len(new) == 1
        order.extend(new)
    expected = []
    for block in range(gen_length // block_length):
        positions = list(range(block * block_length, (block + 1) * block_length))
        expected.extend(sorted(positions, key=lambda p: -float(confidence_scale[p])))
    assert order == expected


def test_low_confidence_commits_top_k_per_row():
    """Two tokens per round, rows with different confidence orders: each row commits its own top two."""
    gen_length = 4
    scales = torch.tensor([[1.0, 4.0, 3.0, 2.0], [4.0, 1.0, 2.0, 3.0]], dtype=torch.float64)
    calls = []

    def model(x, attention_mask=None, select=None):
        calls.append(x.clone())
        logits = torch.zeros(x.shape[0], x.shape[1], VOCAB, dtype=torch.float64)
        logits[..., 2] = scales
        return logits[select]

    out = generate(model, torch.zeros(2, 0, dtype=torch.long), gen_length, 4, 2, mask_token_id=MASK_ID)
    assert len(calls) == 2
    first_round = torch.tensor([[False, True, True, False], [True, False, False, True]])
    assert torch.equal(calls[1] != MASK_ID, first_round)
    assert (out == 2).all()


# ----------------------------------------------------------------------------------------------------------
# Temperature: Gumbel-max sampling follows softmax(logits / T) without the mask token
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_single_token_sampling_matches_tempered_softmax(temperature):
    rows, vocab, mask_id = 20000, 5, 4
    logits = torch.tensor([0.5, -1.0, 1.2, 0.0, 3.0], dtype=torch.float64)

    def model(x, attention_mask=None, select=None):
        return logits.expand(int(select.sum()), -1).clone()

    out = generate(
        model,
        torch.zeros(rows, 0, dtype=torch.long),
        1,
        1,
        1,
        mask_token_id=mask_id,
        temperature=temperature,
        generator=torch.Generator().manual_seed(int(temperature * 10)),
    )
    assert not (out == mask_id).any()
    counts = torch.bincount(out[:, 0], minlength=vocab).double()[:mask_id]
    probs = (logits[:mask_id] / temperature).softmax(dim=0)
    assert chi2_stat(counts, probs) < chi2_threshold(mask_id - 1)
    for v in range(mask_id):
        se = math.sqrt(rows * probs[v] * (1 - probs[v]))
        assert abs(counts[v] - rows * probs[v]) < 5 * se


# ----------------------------------------------------------------------------------------------------------
# Tiny model: vectorisation, seeding, padding
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
def test_batch_equals_rows_alone_for_greedy(tiny_model, remasking):
    prompts = random_prompts(4, 3, seed=11)
    kwargs = dict(mask_token_id=MASK_ID, temperature=0.0, remasking=remasking)
    if remasking == "random":
        # Random remasking draws one [batch, block] uniform tensor per round; a row alone gets other draws,
        # so only the deterministic low-confidence rule can be compared row by row. Here: runs and is valid.
        out = generate(tiny_model, prompts, 8, 4, 4, generator=torch.Generator().manual_seed(0), **kwargs)
        assert torch.equal(out[:, :3], prompts) and not (out[:, 3:] == MASK_ID).any()
        return
    batched = generate(tiny_model, prompts, 8, 4, 4, **kwargs)
    for row in range(prompts.shape[0]):
        alone = generate(tiny_model, prompts[row : row + 1], 8, 4, 4, **kwargs)
        assert torch.equal(batched[row : row + 1], alone), f"row {row}"
    # Rows differ (the test would be vacuous if every row decoded the same response).
    assert len({tuple(r.tolist()) for r in batched[:, 3:]}) > 1


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
def test_seeded_generator_reproducible_and_seeds_differ(tiny_model, remasking):
    prompts = random_prompts(6, 3, seed=12)

    def run(seed: int) -> torch.Tensor:
        return generate(
            tiny_model,
            prompts,
            8,
            4,
            4,
            mask_token_id=MASK_ID,
            temperature=1.0,
            remasking=remasking,
            generator=torch.Generator().manual_seed(seed),
        )

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    for out in (a, c):
        assert torch.equal(out[:, :3], prompts)
        assert not (out[:, 3:] == MASK_ID).any()


def test_left_padded_prompts_with_attention_mask(tiny_model):
    """A left-padded batch decodes each row as the unpadded prompt alone would (greedy, low confidence).

    The tiny model is bidirectional with relative (RoPE) positions: masked-out left padding changes nothing.
    """
    lengths = [4, 2, 3]
    width = max(lengths)
    prompts = [random_prompts(1, n, seed=20 + n)[0] for n in lengths]
    padded = torch.full((len(lengths), width), 7, dtype=torch.long)
    attention_mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, (p, n) in enumerate(zip(prompts, lengths, strict=True)):
        padded[row, width - n :] = p
        attention_mask[row, width - n :] = 1
    out = generate(tiny_model, padded, 8, 4, 8, mask_token_id=MASK_ID, attention_mask=attention_mask)
    assert torch.equal(out[:, :width], padded)
    assert not (out[:, width:] == MASK_ID).any()
    for row, p in enumerate(prompts):
        alone = generate(tiny_model, p[None], 8, 4, 8, mask_token_id=MASK_ID)
        assert torch.equal(out[row, width:], alone[0, len(p) :]), f"row {row}"
    assert len({tuple(r.tolist()) for r in out[:, width:]}) > 1


def test_attention_mask_is_extended_over_response():
    prompt_len, gen_length = 3, 4
    model = RecordingModel(prompt_len + gen_length)
    prompts = random_prompts(2, prompt_len, seed=0)
    attention_mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    generate(model, prompts, gen_length, 2, 2, mask_token_id=MASK_ID, attention_mask=attention_mask)
    expected = torch.cat([attention_mask, torch.ones(2, gen_length, dtype=torch.long)], dim=1)
    assert all(torch.equal(m, expected) for m in model.masks)


# ----------------------------------------------------------------------------------------------------------
# Exactness: oracle posterior + one token per round + random order + T = 1 samples the joint exactly
# ----------------------------------------------------------------------------------------------------------

ORACLE_TOKENS = 3  # token ids 0, 1, 2 ; id 3 is the mask
ORACLE_MASK = 3
ORACLE_LEN = 4


def oracle_joint(num_prompts: int, seed: int) -> torch.Tensor:
    """p(response | prompt) over the 3^4 responses, for each prompt token: [num_prompts, 81]."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(num_prompts, ORACLE_TOKENS**ORACLE_LEN, generator=g, dtype=torch.float64)
    return (1.5 * scores).softmax(dim=-1)


ALL_SEQUENCES = torch.tensor(list(itertools.product(range(ORACLE_TOKENS), repeat=ORACLE_LEN)))  # [81, 4]


class Oracle:
    """Returns log pi(v | x_t, i) = log P(X^i = v | unmasked tokens of x_t) by enumerating the joint."""

    def __init__(self, joint: torch.Tensor, prompt_len: int):
        self.joint, self.prompt_len = joint, prompt_len
        self.calls = 0

    def __call__(self, x, attention_mask=None, select=None):
        self.calls += 1
        response = x[:, self.prompt_len :]
        prompt = x[:, 0] if self.prompt_len else torch.zeros(x.shape[0], dtype=torch.long)
        weights = self.joint[prompt]  # [batch, 81]
        visible = response != ORACLE_MASK
        agree = (ALL_SEQUENCES[None] == response[:, None]) | ~visible[:, None]  # [batch, 81, 4]
        weights = weights * agree.all(dim=2)
        onehot = torch.nn.functional.one_hot(ALL_SEQUENCES, ORACLE_TOKENS + 1).double()  # [81, 4, V]
        posterior = torch.einsum("bs,siv->biv", weights, onehot)
        posterior = posterior / posterior.sum(dim=2, keepdim=True)
        logits = posterior.clamp_min(1e-300).log()
        # A large finite logit on the mask token: the sampler must exclude it.
        logits[..., ORACLE_MASK] = 5.0
        full = torch.zeros(x.shape[0], x.shape[1], ORACLE_TOKENS + 1, dtype=torch.float64)
        full[:, self.prompt_len :] = logits
        return full[select]


def sequence_index(responses: torch.Tensor) -> torch.Tensor:
    powers = ORACLE_TOKENS ** torch.arange(ORACLE_LEN - 1, -1, -1)
    return (responses * powers).sum(dim=1)


def sample_oracle(joint, prompt_len, block_length, rows, batch, seed, temperature=1.0, remasking="random"):
    oracle = Oracle(joint, prompt_len)
    g = torch.Generator().manual_seed(seed)
    outs = []
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        if prompt_len:
            prompts = torch.arange(start, start + n)[:, None] % joint.shape[0]
        else:
            prompts = torch.zeros(n, 0, dtype=torch.long)
        outs.append(
            generate(
                oracle,
                prompts,
                ORACLE_LEN,
                block_length,
                ORACLE_LEN,
                mask_token_id=ORACLE_MASK,
                temperature=temperature,
                remasking=remasking,
                generator=g,
            )
        )
    assert oracle.calls == ORACLE_LEN * len(outs)
    return torch.cat(outs)


def empirical_check(out, joint, prompt_len):
    """Return the worst total-variation distance and whether every chi-square test passes."""
    prompt = out[:, 0] if prompt_len else torch.zeros(out.shape[0], dtype=torch.long)
    worst_tv, chi2_ok = 0.0, True
    for c in range(joint.shape[0]):
        responses = out[prompt == c, prompt_len:]
        counts = torch.bincount(sequence_index(responses), minlength=ALL_SEQUENCES.shape[0]).double()
        freq = counts / counts.sum()
        worst_tv = max(worst_tv, 0.5 * float((freq - joint[c]).abs().sum()))
        df = int((counts.sum() * joint[c] >= 5).sum())  # pooled cells: (#kept + 1) - 1
        chi2_ok &= chi2_stat(counts, joint[c]) < chi2_threshold(df)
    return worst_tv, chi2_ok


@pytest.mark.parametrize(("prompt_len", "block_length"), [(0, 4), (0, 2), (1, 1), (1, 2)])
def test_random_remasking_samples_joint_exactly(prompt_len, block_length):
    num_prompts = 2 if prompt_len else 1
    joint = oracle_joint(num_prompts, seed=prompt_len * 10 + block_length)
    rows = 40000 * num_prompts
    out = sample_oracle(joint, prompt_len, block_length, rows, batch=4000, seed=block_length)
    assert not (out == ORACLE_MASK).any()
    tv, chi2_ok = empirical_check(out, joint, prompt_len)
    assert tv < 0.03, f"total variation {tv:.4f}"
    assert chi2_ok


def test_exactness_check_has_power():
    """The same check rejects a sampler at the wrong temperature: the exactness test can fail."""
    joint = oracle_joint(1, seed=4)
    out = sample_oracle(joint, 0, 4, 20000, batch=4000, seed=0, temperature=0.5)
    tv, chi2_ok = empirical_check(out, joint, 0)
    assert tv > 0.05 and not chi2_ok


# ----------------------------------------------------------------------------------------------------------
# Confidence-threshold parallel decoding, per-row generators, decoding cost
# ----------------------------------------------------------------------------------------------------------


class StateRecorder:
    """Delegates to a model and records every call's rows (full sequences) and the block it decodes."""

    def __init__(self, model):
        self.model = model
        self.calls: list[tuple[torch.Tensor, int]] = []

    def __call__(self, x, attention_mask=None, select=None):
        self.calls.append((x.clone(), int(select[0].nonzero()[0])))
        return self.model(x, attention_mask=attention_mask, select=select)


def padded_batch(lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct left-padded prompts (a row is recognised by its prompt) and their attention mask."""
    width = max(lengths)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (len(lengths), width), generator=g)
    mask = torch.ones_like(ids)
    for row, n in enumerate(lengths):
        mask[row, : width - n] = 0
    assert len({tuple(r.tolist()) for r in ids}) == len(lengths)
    return ids, mask


THRESHOLD_CASES = [
    (0.0, "low_confidence", 0.5),
    (0.0, "low_confidence", 0.05),
    (1.0, "low_confidence", 0.3),
    (1.0, "random", 0.3),
    (1.0, "random", 0.9),
    (0.0, "random", 0.5),
]


@pytest.mark.parametrize(("temperature", "remasking", "threshold"), THRESHOLD_CASES)
def test_threshold_decoding_invariants(tiny_model, temperature, remasking, threshold):
    """Prompt untouched; exactly gen_length tokens committed; each call holds the rows whose block is unfinished, and
    every one of them commits at least one token, inside the block, without changing committed ones."""
    gen_length, block_length = 12, 4
    ids, mask = padded_batch([4, 2, 3, 1, 4], seed=31)
    recorder = StateRecorder(tiny_model)
    out = generate(
        recorder,
        ids,
        gen_length,
        block_length,
        3,
        mask_token_id=MASK_ID,
        temperature=temperature,
        remasking=remasking,
        attention_mask=mask,
        generator=torch.Generator().manual_seed(2),
        threshold=threshold,
    )
    width = ids.shape[1]
    assert torch.equal(out[:, :width], ids)
    assert not (out[:, width:] == MASK_ID).any()
    history: dict[int, list[tuple[torch.Tensor, int]]] = {row: [] for row in range(len(ids))}
    for x, start in recorder.calls:
        for seq in x:
            row = next(r for r in range(len(ids)) if torch.equal(seq[:width], ids[r]))
            history[row].append((seq, start))
    parallel = False
    for row, states in history.items():
        finals = [*states[1:], (out[row], None)]
        for (before, start), (after, _) in zip(states, finals, strict=True):
            block = slice(start, start + block_length)
            assert (before[block] == MASK_ID).any(), f"row {row}: called on a finished block"
            assert (before[width:start] != MASK_ID).all() and (before[start + block_length :] == MASK_ID).all()
            new = (before == MASK_ID) & (after != MASK_ID)
            assert new.any(), f"row {row}: a round committed nothing"
            assert new[block].sum() == new.sum(), f"row {row}: a token outside the current block"
            was = before != MASK_ID
            assert torch.equal(after[was], before[was])
            parallel |= bool(new.sum() > 1)
        assert len(states) <= gen_length
    if threshold < 0.9:
        assert parallel, "no round committed several tokens: the threshold was never used"


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_threshold_one_is_the_one_token_per_round_sampler(tiny_model, remasking, temperature):
    """A probability never exceeds 1: threshold 1 commits one token per round, and draws the same random numbers as
    the fixed schedule with steps = gen_length, so both decode the same tokens."""
    ids, mask = padded_batch([3, 1, 2, 3], seed=32)
    outs = []
    for threshold, steps in ((1.0, 2), (None, 8)):
        outs.append(
            generate(
                tiny_model,
                ids,
                8,
                4,
                steps,
                mask_token_id=MASK_ID,
                temperature=temperature,
                remasking=remasking,
                attention_mask=mask,
                generator=torch.Generator().manual_seed(3),
                threshold=threshold,
            )
        )
    assert torch.equal(outs[0], outs[1])


def test_low_confidence_threshold_commits_every_confident_position_and_the_best():
    """Position-only logits: round 1 commits the positions whose top probability exceeds tau (and the most
    confident one); the logits never change, so every later round commits the best remaining one."""
    gen_length = 8
    peaks = torch.tensor([0.95, 0.3, 0.7, 0.2, 0.4, 0.1, 0.85, 0.6], dtype=torch.float64)
    top = (torch.arange(gen_length) % (VOCAB - 2)) + 2
    table = ((1 - peaks) / (VOCAB - 2)).log()[:, None].expand(gen_length, VOCAB).clone()  # the rest spread evenly
    table[torch.arange(gen_length), top] = peaks.log()
    model = RecordingModel(gen_length, table=table)
    out = generate(model, torch.zeros(1, 0, dtype=torch.long), gen_length, 8, 8, mask_token_id=MASK_ID, threshold=0.5)
    assert torch.equal(out[0], top)
    rounds = []
    for before, after in itertools.pairwise([*model.inputs, out]):
        rounds.append(set(((before[0] == MASK_ID) & (after[0] != MASK_ID)).nonzero().flatten().tolist()))
    assert rounds == [{0, 2, 6, 7}, {4}, {1}, {3}, {5}]


def test_random_threshold_commits_a_confident_run_along_a_uniform_order():
    """Random order: a round commits one position of any confidence, then only confident ones. With position-only
    logits where positions 0-3 are confident and 4-7 are not, every round commits at most one unconfident position,
    a round that starts on a confident position goes on until an unconfident one or the end, and the first
    position a round commits is uniform over the masked ones."""
    gen_length = 8
    peaks = torch.tensor([0.99] * 4 + [0.4] * 4, dtype=torch.float64)
    table = torch.full((gen_length, VOCAB), -30.0, dtype=torch.float64)
    table[torch.arange(gen_length), 2] = peaks.log()
    table[torch.arange(gen_length), 3] = (1 - peaks).log()
    rows = 4000
    model = RecordingModel(gen_length, table=table)
    generate(
        model,
        torch.zeros(rows, 0, dtype=torch.long),
        gen_length,
        8,
        8,
        mask_token_id=MASK_ID,
        temperature=1.0,
        remasking="random",
        generator=torch.Generator().manual_seed(4),
        threshold=0.9,
    )
    first_round = (model.inputs[1] != MASK_ID) if len(model.inputs) > 1 else None
    assert first_round is not None
    confident = torch.arange(gen_length) < 4
    for before, after in itertools.pairwise(model.inputs):
        if before.shape != after.shape:
            continue  # rows left the calls; the per-row checks below use full-batch rounds only
        new = (before == MASK_ID) & (after != MASK_ID)
        assert ((new & ~confident).sum(dim=1) <= 1).all()
    # Round 1 from the all-masked block: the committed set is {first} + a confident run. Its size is 1 + the run.
    sizes = first_round.sum(dim=1)
    first_unconfident = (first_round & ~confident).any(dim=1)
    # P(the first position is unconfident) = 1/2; then the run is over the 3 or 4 confident positions before the
    # next unconfident one in a uniform order.
    assert abs(first_unconfident.double().mean().item() - 0.5) < 5 * math.sqrt(0.25 / rows)
    # Exact law of the number of confident positions committed: the run length R along a uniform order of the
    # remaining 7 positions (4 or 3 confident of them): P(R >= r) = C(c, r) / C(7, r).
    for start_unconfident, c in ((True, 4), (False, 3)):
        chosen = first_unconfident == start_unconfident
        run = sizes[chosen] - 1
        for r in range(1, c + 1):
            expected = math.comb(c, r) / math.comb(7, r)
            observed = (run >= r).double().mean().item()
            assert abs(observed - expected) < 5 * math.sqrt(expected * (1 - expected) / int(chosen.sum())) + 1e-9


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
@pytest.mark.parametrize("threshold", [None, 0.4])
def test_greedy_rows_decode_alone_as_in_a_padded_batch(tiny_model, cache, threshold):
    ids, mask = padded_batch([4, 1, 3, 2], seed=33)
    kwargs = dict(mask_token_id=MASK_ID, threshold=threshold, cache=cache)
    batched = generate(tiny_model, ids, 12, 4, 6, attention_mask=mask, **kwargs)
    width = ids.shape[1]
    for row in range(len(ids)):
        prompt = ids[row, mask[row].bool()][None]
        alone = generate(tiny_model, prompt, 12, 4, 6, **kwargs)
        assert torch.equal(batched[row, width:], alone[0, prompt.shape[1] :]), f"row {row}"
    assert len({tuple(r.tolist()) for r in batched[:, width:]}) > 1


@pytest.mark.parametrize("threshold", [None, 0.4])
@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
def test_rows_with_their_own_generators_decode_alone_as_in_a_batch(tiny_model, threshold, remasking):
    """Sampling with one generator per row: a row's draws do not depend on the other rows."""
    ids, mask = padded_batch([4, 1, 3, 2], seed=34)
    kwargs = dict(mask_token_id=MASK_ID, temperature=1.0, remasking=remasking, threshold=threshold)

    def generators(rows):
        return [torch.Generator().manual_seed(100 + r) for r in rows]

    batched = generate(tiny_model, ids, 12, 4, 6, attention_mask=mask, generator=generators(range(4)), **kwargs)
    again = generate(tiny_model, ids, 12, 4, 6, attention_mask=mask, generator=generators(range(4)), **kwargs)
    assert torch.equal(batched, again)
    width = ids.shape[1]
    for row in range(len(ids)):
        prompt = ids[row, mask[row].bool()][None]
        alone = generate(tiny_model, prompt, 12, 4, 6, generator=generators([row]), **kwargs)
        assert torch.equal(batched[row, width:], alone[0, prompt.shape[1] :]), f"row {row}"
    with pytest.raises(ValueError, match="3 generators for 4 rows"):
        generate(tiny_model, ids, 12, 4, 6, attention_mask=mask, generator=generators(range(3)), **kwargs)


def test_threshold_sampling_is_seeded(tiny_model):
    ids = random_prompts(6, 3, seed=35)

    def run(seed: int) -> torch.Tensor:
        return generate(
            tiny_model,
            ids,
            12,
            4,
            3,
            mask_token_id=MASK_ID,
            temperature=1.0,
            remasking="random",
            generator=torch.Generator().manual_seed(seed),
            threshold=0.5,
        )

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0.0}, r"threshold: must be in \(0, 1\]"),
        ({"threshold": 1.5}, r"threshold: must be in \(0, 1\]"),
        ({"cache": "full"}, "cache: must be"),
        ({"cache": "dual", "cache_refresh": -1}, "cache_refresh: must be >= 0"),
        ({"cache_refresh": 2}, "needs a cache"),
        ({"cache": "dual", "cache_refresh": 3}, "does not fit the block: a block takes at most 2 rounds"),
        ({"cache": "dual", "cache_refresh": 5, "threshold": 0.9}, "at most 4 rounds"),
    ],
)
def test_bad_decoding_settings_are_refused(tiny_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(tiny_model, random_prompts(1, 2, 0), 8, 4, 4, mask_token_id=MASK_ID, **kwargs)


@pytest.mark.parametrize(
    "settings",
    [
        {"block_length": 3},
        {"decode_steps": 1},
        {"temperature": -1.0},
        {"threshold": 0.0},
        {"cache_refresh": 2},
        {"cache": "dual", "cache_refresh": 3},
    ],
)
def test_config_and_sampler_refuse_a_bad_decoding_with_the_same_text(tiny_model, settings):
    """One owner of the decoding rules: a SamplingConfig and the sampler name the same key with the same message."""
    values = {"gen_length": 8, "block_length": 4, "decode_steps": 4, "temperature": 1.0} | settings
    with pytest.raises(ConfigError) as config_error:
        SamplingConfig(**values)
    kwargs = {k: values[k] for k in ("temperature", "threshold", "cache", "cache_refresh") if k in values}
    with pytest.raises(ValueError) as sampler_error:
        generate(
            tiny_model,
            random_prompts(1, 2, 0),
            values["gen_length"],
            values["block_length"],
            values["decode_steps"],
            mask_token_id=MASK_ID,
            **kwargs,
        )
    assert str(config_error.value) == str(sampler_error.value).replace("steps:", "decode_steps:", 1)


def test_decode_stats_count_what_each_row_went_through(tiny_model):
    """Fixed schedule: every row takes part in every pass. Threshold: each row in the passes that decoded it, which
    the model's calls confirm; tokens, attention pairs and head positions follow from the pass shapes."""
    from dtm.diffusion.sampler import DecodeStats

    ids, mask = padded_batch([4, 1, 3, 2, 4], seed=36)
    length = ids.shape[1] + 12
    stats = DecodeStats.zeros(len(ids))
    generate(tiny_model, ids, 12, 4, 6, mask_token_id=MASK_ID, attention_mask=mask, stats=stats)
    assert (stats.passes == 6).all() and (stats.tokens == 6 * length).all()
    assert (stats.attention_pairs == 6 * length * length).all() and (stats.head_positions == 6 * 4).all()

    recorder = StateRecorder(tiny_model)
    stats = DecodeStats.zeros(len(ids))
    generate(recorder, ids, 12, 4, 6, mask_token_id=MASK_ID, attention_mask=mask, stats=stats, threshold=0.3)
    per_row = torch.zeros(len(ids), dtype=torch.long)
    for x, _ in recorder.calls:
        for seq in x:
            per_row[next(r for r in range(len(ids)) if torch.equal(seq[: ids.shape[1]], ids[r]))] += 1
    assert torch.equal(stats.passes, per_row)
    assert len(set(per_row.tolist())) > 1, "every row took as many rounds: the per-row count is not tested"
    assert torch.equal(stats.tokens, per_row * length) and torch.equal(stats.head_positions, per_row * 4)

    stats = DecodeStats.zeros(len(ids))
    generate(tiny_model, ids, 12, 4, 12, mask_token_id=MASK_ID, attention_mask=mask, stats=stats, cache="dual")
    full, cached = 3, 9  # a refresh per block, then the block's 4 positions against all 22 keys
    assert (stats.passes == full + cached).all() and (stats.tokens == full * length + cached * 4).all()
    assert (stats.attention_pairs == (full * length + cached * 4) * length).all()
