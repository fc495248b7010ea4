"""Tests for dtm.models: the DiffusionLM interface and the built-in bidirectional tiny Llama."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from dtm.models import DiffusionLM, TinyModelConfig, build_tiny_model, load_model, save_model

VOCAB = 12
MASK_ID = 5


def tiny_config(**overrides) -> TinyModelConfig:
    fields = dict(
        vocab_size=VOCAB,
        mask_token_id=MASK_ID,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        intermediate_size=64,
    )
    fields.update(overrides)
    return TinyModelConfig(**fields)


@pytest.fixture(scope="module")
def model() -> DiffusionLM:
    torch.manual_seed(0)
    return build_tiny_model(tiny_config()).eval().double()


def random_ids(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, shape, generator=g)


def other_token(t: torch.Tensor) -> torch.Tensor:
    """A different token id at every entry."""
    return (t + 1) % VOCAB


# ----------------------------------------------------------------------------------------------------------
# Construction
# ----------------------------------------------------------------------------------------------------------


def test_build_returns_diffusion_lm_with_mask_id_and_vocab(model):
    assert isinstance(model, DiffusionLM)
    assert model.mask_token_id == MASK_ID
    assert model.config.vocab_size == VOCAB
    with torch.no_grad():
        logits = model(random_ids((3, 7), 1))
    assert logits.shape == (3, 7, VOCAB)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("mask_token_id", [-1, VOCAB, VOCAB + 3])
def test_build_rejects_mask_token_outside_vocab(mask_token_id):
    with pytest.raises(ValueError, match="mask_token_id"):
        build_tiny_model(tiny_config(mask_token_id=mask_token_id))


def test_build_rejects_hidden_size_not_divisible_by_heads():
    with pytest.raises(ValueError, match="divisible"):
        build_tiny_model(tiny_config(hidden_size=30, num_heads=4))


# ----------------------------------------------------------------------------------------------------------
# Attention: bidirectional, and padding does not leak
# ----------------------------------------------------------------------------------------------------------


def test_model_is_bidirectional(model):
    x = random_ids((2, 8), 2)
    with torch.no_grad():
        base = model(x)
        later = x.clone()
        later[:, -1] = other_token(later[:, -1])
        changed_later = model(later)
        earlier = x.clone()
        earlier[:, 0] = other_token(earlier[:, 0])
        changed_earlier = model(earlier)
    # A causal model would leave every position before the last one unchanged.
    for pos in range(7):
        assert (changed_later[:, pos] - base[:, pos]).abs().amax() > 1e-6, pos
    for pos in range(1, 8):
        assert (changed_earlier[:, pos] - base[:, pos]).abs().amax() > 1e-6, pos


def test_left_padding_does_not_leak(model):
    pad = 3
    x = random_ids((3, 9), 3)
    attention_mask = torch.ones_like(x)
    attention_mask[0, :pad] = 0
    attention_mask[1, :1] = 0
    with torch.no_grad():
        base = model(x, attention_mask=attention_mask)
        changed = x.clone()
        changed[attention_mask == 0] = other_token(x[attention_mask == 0])
        assert (changed != x)[attention_mask == 0].all()
        out = model(changed, attention_mask=attention_mask)
    real = attention_mask.bool()
    torch.testing.assert_close(out[real], base[real], atol=1e-9, rtol=0)
    # Sanity: without the attention mask the same change is visible at real positions.
    with torch.no_grad():
        leak = (model(changed)[0, pad:] - model(x)[0, pad:]).abs().amax()
    assert leak > 1e-6


def test_left_padding_matches_unpadded_sequence(model):
    """RoPE is relative and attention bidirectional: a left-padded row gets the unpadded row's logits."""
    x = random_ids((1, 6), 4)
    padded = torch.cat([torch.full((1, 4), 7), x], dim=1)
    attention_mask = torch.tensor([[0] * 4 + [1] * 6])
    with torch.no_grad():
        plain = model(x)
        with_pad = model(padded, attention_mask=attention_mask)[:, 4:]
    torch.testing.assert_close(with_pad, plain, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------------------------------------
# select= returns the full logits indexed by the mask
# ----------------------------------------------------------------------------------------------------------


def test_select_equals_full_logits_indexed(model):
    x = random_ids((3, 8), 5)
    attention_mask = torch.ones_like(x)
    attention_mask[2, :2] = 0
    g = torch.Generator().manual_seed(6)
    select = torch.rand(x.shape, generator=g) < 0.4
    select[0] = False  # a row with no selected position
    select[1, -1] = True
    with torch.no_grad():
        full = model(x, attention_mask=attention_mask)
        picked = model(x, attention_mask=attention_mask, select=select)
    assert picked.shape == (int(select.sum()), VOCAB)
    torch.testing.assert_close(picked, full[select], atol=1e-9, rtol=0)
    # Row-major order, checked element by element.
    rows, cols = select.nonzero(as_tuple=True)
    for k, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        torch.testing.assert_close(picked[k], full[r, c], atol=1e-9, rtol=0)


class _LogitsOnly(nn.Module):
    """No get_output_embeddings / get_decoder: DiffusionLM must fall back to indexing full logits."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, VOCAB)

    def forward(self, input_ids, attention_mask=None):
        mixed = self.embed(input_ids) + self.embed(input_ids).mean(dim=1, keepdim=True)
        return SimpleNamespace(logits=mixed)


def test_select_fallback_without_backbone_head_split():
    torch.manual_seed(1)
    wrapped = DiffusionLM(_LogitsOnly(), MASK_ID)
    assert wrapped._split() is None
    x = random_ids((2, 5), 7)
    select = torch.tensor([[True, False, True, False, False], [False, False, False, True, True]])
    with torch.no_grad():
        full = wrapped(x)
        picked = wrapped(x, select=select)
    assert full.shape == (2, 5, VOCAB)
    torch.testing.assert_close(picked, full[select])


# ----------------------------------------------------------------------------------------------------------
# save / load
# ----------------------------------------------------------------------------------------------------------


def test_save_load_round_trip(model, tmp_path):
    folder = tmp_path / "ckpt"
    save_model(model, folder)
    assert (folder / "config.json").is_file()
    loaded = load_model(folder).eval().double()
    assert isinstance(loaded, DiffusionLM)
    assert loaded.mask_token_id == MASK_ID
    x = random_ids((2, 7), 8)
    select = torch.zeros_like(x, dtype=torch.bool)
    select[:, 3:] = True
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
        torch.testing.assert_close(loaded(x, select=select), model(x, select=select), atol=0, rtol=0)


def test_save_load_keeps_non_default_mask_id(tmp_path):
    torch.manual_seed(2)
    built = build_tiny_model(tiny_config(mask_token_id=VOCAB - 1)).eval()
    save_model(built, tmp_path)
    assert load_model(tmp_path).mask_token_id == VOCAB - 1
    assert load_model(tmp_path, mask_token_id=3).mask_token_id == 3
    x = random_ids((1, 5), 9)
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path).eval()(x), built(x), atol=0, rtol=0)


def test_load_missing_folder_raises_naming_path(tmp_path):
    missing = tmp_path / "does_not_exist"
    with pytest.raises(FileNotFoundError) as info:
        load_model(missing)
    assert str(missing) in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        load_model(empty)
    assert str(empty) in str(info.value)


# ----------------------------------------------------------------------------------------------------------
# Gradient checkpointing
# ----------------------------------------------------------------------------------------------------------


def loss_and_grads(model: DiffusionLM, ids: torch.Tensor, select: torch.Tensor) -> tuple[float, dict]:
    model.zero_grad(set_to_none=True)
    loss = model(ids, select=select).logsumexp(-1).sum()
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("lora", [False, True])
def test_gradient_checkpointing_recomputes_layers_with_identical_gradients(lora):
    from peft import LoraConfig

    from dtm.training.teacher import add_lora_adapters

    torch.manual_seed(0)
    plain = build_tiny_model(tiny_config()).double().train()
    if lora:
        plain = add_lora_adapters(plain, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    ids = random_ids((3, 10), seed=1)
    select = torch.zeros_like(ids, dtype=torch.bool)
    select[:, 5:] = True
    reference_loss, reference_grads = loss_and_grads(plain, ids, select)

    plain.enable_gradient_checkpointing()
    calls = []
    layer = plain.model.get_decoder().layers[0].mlp
    handle = layer.register_forward_pre_hook(lambda *_: calls.append(1))
    loss, grads = loss_and_grads(plain, ids, select)
    handle.remove()
    assert len(calls) == 2  # the layer ran again during backward: activations were not kept
    assert loss == pytest.approx(reference_loss, rel=1e-12)
    assert grads.keys() == reference_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], reference_grads[name], rtol=1e-10, atol=1e-12, msg=name)


def test_gradient_checkpointing_unsupported_model_raises():
    class Plain(nn.Module):
        def forward(self, input_ids, attention_mask=None):
            return SimpleNamespace(logits=torch.zeros(*input_ids.shape, VOCAB))

    with pytest.raises(ValueError, match="Plain does not support gradient checkpointing"):
        DiffusionLM(Plain(), MASK_ID).enable_gradient_checkpointing()
