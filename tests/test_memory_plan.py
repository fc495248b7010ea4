"""The memory plan's counts against the built-in model: parameter counts exactly, activation bytes against what
autograd really keeps (re-measured at shapes other than those the coefficients were read at)."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig

from dtm.diffusion.losses import cdtm_loss
from dtm.memory_plan import (
    LORA_TARGETS,
    ModelShape,
    StepShape,
    activation_bytes,
    layer_activation_bytes,
    memory_plan,
)
from dtm.models import TinyModelConfig, build_tiny_model
from dtm.training.teacher import add_lora_adapters

VOCAB = 40


def tiny(h: int, f: int, layers: int, heads: int, lora_r: int | None = None, checkpointing: bool = False):
    torch.manual_seed(0)
    cfg = TinyModelConfig(
        vocab_size=VOCAB, hidden_size=h, intermediate_size=f, num_layers=layers, num_heads=heads, max_length=512
    )
    model = build_tiny_model(cfg)
    if lora_r:
        lora = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.05, target_modules=list(LORA_TARGETS))
        model = add_lora_adapters(model, lora)
    model = model.to(torch.bfloat16).train()
    if checkpointing:
        model.enable_gradient_checkpointing()
    return model


def saved_bytes(model, rows: int, length: int, loss_per_row: int) -> int:
    """Bytes of distinct non-parameter storages autograd saves for one forward pass plus the c-DTM loss."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(VOCAB, (rows, length), generator=g)
    select = torch.zeros(rows, length, dtype=torch.bool)
    select[:, -loss_per_row:] = True
    n = int(select.sum())
    teacher_logits = torch.randn(n, VOCAB, generator=g).to(torch.bfloat16)
    targets = torch.randint(VOCAB, (n,), generator=g)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(ids, select=select)
        cdtm_loss(logits, teacher_logits, targets, torch.zeros(n), torch.full((n,), 1 / n), c=1.0)
    return sum(seen.values())


def test_parameter_counts_match_the_built_model():
    model = tiny(48, 80, 3, 6)
    shape = ModelShape.from_hf_config(model.config)
    assert shape.params() == sum(p.numel() for p in model.parameters())
    with_lora = tiny(48, 80, 3, 6, lora_r=4)
    student = sum(p.numel() for n, p in with_lora.named_parameters() if ".student." in n)
    assert shape.lora_params(4) == student


def test_llada_8b_has_8_billion_parameters():
    assert ModelShape.llada_8b().params() == pytest.approx(8.02e9, rel=0.005)


@pytest.mark.parametrize("lora_r", [None, 12])
@pytest.mark.parametrize(("h", "f", "heads"), [(96, 160, 6), (160, 96, 2)])
def test_layer_activation_bytes_match_autograd(h, f, heads, lora_r):
    """Per-layer bytes: difference between 3 and 1 layers, so everything outside the layers cancels."""
    rows, length = 3, 200
    deep = saved_bytes(tiny(h, f, 3, heads, lora_r), rows, length, 4)
    shallow = saved_bytes(tiny(h, f, 1, heads, lora_r), rows, length, 4)
    per_token_layer = (deep - shallow) / 2 / (rows * length)
    assert per_token_layer == pytest.approx(layer_activation_bytes(ModelShape(VOCAB, h, f, 3, heads, heads), lora_r))


@pytest.mark.parametrize("lora_r", [None, 8])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_total_activation_bytes_within_5_percent(checkpointing, lora_r):
    h, f, heads, layers, rows, length, loss_per_row = 96, 160, 6, 4, 3, 200, 16
    measured = saved_bytes(tiny(h, f, layers, heads, lora_r, checkpointing), rows, length, loss_per_row)
    shape = ModelShape(VOCAB, h, f, layers, heads, heads)
    planned = activation_bytes(shape, rows * length, rows * loss_per_row, lora_r, checkpointing)
    if checkpointing:  # the one layer recomputed during the backward pass is not kept by the forward pass
        planned -= layer_activation_bytes(shape, lora_r) * rows * length
    assert measured == pytest.approx(planned, rel=0.05)


def test_plan_paper_countdown_fits_one_80gb_gpu_only_as_lora():
    shape, step = ModelShape.llada_8b(), StepShape(micro_batch=12, prompt_length=172)
    lora = memory_plan(shape, step, lora_r=128, four_bit=True, ema=True)
    assert lora["total"] == pytest.approx(sum(v for k, v in lora.items() if k != "total"))
    assert lora["total"] < 80
    full = memory_plan(shape, step, lora_r=None, four_bit=False, checkpointing=True)
    assert full["total"] > 80  # fp32 master weights + AdamW alone exceed one GPU
    assert full["AdamW moments"] == pytest.approx(8 * shape.params() / 1e9)
    sharded = memory_plan(shape, step, lora_r=None, four_bit=False, checkpointing=True, shards=8)
    assert sharded["total"] < 80 and sharded["activations"] == full["activations"]
    assert memory_plan(shape, step, checkpointing=True)["activations"] < lora["activations"] / 5
    with pytest.raises(ValueError, match="full fine-tuning"):
        memory_plan(shape, step, lora_r=None, four_bit=True)
