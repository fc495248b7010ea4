"""Per-GPU memory of a DTM training step, computed from the model's shape and the batch shape.

Weights, adapters, gradients and AdamW moments follow from parameter counts. Activations follow from what autograd
keeps for the backward pass of one bidirectional Llama-style layer with SDPA/flash attention (no [seq, seq] score
matrix is stored), in bytes per token per layer, for a bf16 model:

    base layer:               24 h + 8 f + 4 n_heads + 8
    LoRA on q,k,v,o,gate,up,down with dropout (bf16 adapters):   + 16 h + 2 f + 14 r
    gradient checkpointing:   2 h (the layer input) per layer, plus one layer recomputed during the backward pass

(h = hidden size, f = MLP size, r = LoRA rank). These coefficients were read off autograd's saved tensors on the
built-in model; ``tests/test_memory_plan.py`` re-measures them at other shapes. Outside the layers: 4 h per token
(final norm; 2 h more when the embeddings train) and 10 V + 2 h bytes per loss position (fp32 log-softmax and teacher
probabilities, bf16 teacher logits, the selected hidden states), since logits are computed only at loss positions.
The counts assume multi-head attention (LLaDA's); grouped-query attention keeps less.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GB = 1e9
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
NF4_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # 4-bit weights + 8-bit absmax per 64 + fp32 scale per 256 blocks


@dataclass(frozen=True)
class ModelShape:
    """The sizes that decide memory. ``llada_8b()`` gives LLaDA-8B-Instruct's."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    tie_embeddings: bool = False

    @classmethod
    def llada_8b(cls) -> ModelShape:
        return cls(126464, 4096, 12288, 32, 32, 32)

    @classmethod
    def from_hf_config(cls, config: Any) -> ModelShape:
        heads = config.num_attention_heads
        return cls(
            config.vocab_size,
            config.hidden_size,
            config.intermediate_size,
            config.num_hidden_layers,
            heads,
            getattr(config, "num_key_value_heads", None) or heads,
            bool(getattr(config, "tie_word_embeddings", False)),
        )

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each projection in one layer."""
        h, f = self.hidden_size, self.intermediate_size
        kv = h // self.num_heads * self.num_kv_heads
        return {
            "q_proj": (h, h),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (h, h),
            "gate_proj": (h, f),
            "up_proj": (h, f),
            "down_proj": (f, h),
        }

    def linear_params(self) -> int:
        """Parameters in the layers' projections (what 4-bit quantisation compresses)."""
        return self.num_layers * sum(i * o for i, o in self.linear_shapes().values())

    def other_params(self) -> int:
        """Embeddings, output head and norms (kept in bf16 under 4-bit quantisation)."""
        h, v = self.hidden_size, self.vocab_size
        return v * h * (1 if self.tie_embeddings else 2) + (2 * self.num_layers + 1) * h

    def params(self) -> int:
        return self.linear_params() + self.other_params()

    def forward_flops(self, tokens: Any, attention_pairs: Any, head_positions: Any) -> Any:
        """Model FLOPs of forward passes (multiply-adds count 2): ``tokens`` positions through the layers' projections,
        ``attention_pairs`` query-key pairs per layer (scores and the weighted sum of values: 4 h FLOPs each) and
        ``head_positions`` through the output head. Norms, activations and softmax are left out (a few FLOPs per
        element against h per element for the matmuls). Works elementwise on numbers or tensors."""
        h = self.hidden_size
        return (
            2 * tokens * (self.linear_params())
            + 4 * attention_pairs * h * self.num_layers
            + 2 * head_positions * h * self.vocab_size
        )

    def lora_params(self, r: int, targets: tuple[str, ...] = LORA_TARGETS) -> int:
        """Parameters of one LoRA adapter: r (in + out) per adapted projection."""
        shapes = self.linear_shapes()
        return self.num_layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets)


def layer_activation_bytes(shape: ModelShape, lora_r: int | None = None) -> int:
    """Bytes autograd keeps per token for one layer's backward pass (bf16; LoRA with dropout on all projections)."""
    h, f = shape.hidden_size, shape.intermediate_size
    total = 24 * h + 8 * f + 4 * shape.num_heads + 8
    if lora_r:
        total += 16 * h + 2 * f + 14 * lora_r
    return total


def activation_bytes(
    shape: ModelShape, tokens: int, loss_positions: int, lora_r: int | None = None, checkpointing: bool = False
) -> int:
    """Activation memory of one micro-batch's forward pass, kept for its backward pass. ``lora_r=None``: full
    fine-tuning (the embeddings train too)."""
    h = shape.hidden_size
    per_layer = layer_activation_bytes(shape, lora_r)
    if checkpointing:
        layers = shape.num_layers * 2 * h * tokens + per_layer * tokens
    else:
        layers = shape.num_layers * per_layer * tokens
    outside = (4 if lora_r else 6) * h * tokens + (10 * shape.vocab_size + 2 * h) * loss_positions
    return layers + outside


@dataclass(frozen=True)
class StepShape:
    """One micro-batch: rows x (prompt + generation) tokens, with ``block_length`` loss positions per row at most
    (SAR-aligned masking trains on the active block)."""

    micro_batch: int
    prompt_length: int
    gen_length: int = 256
    block_length: int = 32

    @property
    def tokens(self) -> int:
        return self.micro_batch * (self.prompt_length + self.gen_length)

    @property
    def loss_positions(self) -> int:
        return self.micro_batch * self.block_length


def memory_plan(
    shape: ModelShape,
    step: StepShape,
    *,
    lora_r: int | None = 128,
    four_bit: bool = True,
    checkpointing: bool = False,
    ema: bool = False,
    shards: int = 1,
) -> dict[str, float]:
    """GB per GPU. ``lora_r=None`` means full fine-tuning: fp32 student weights, gradients and AdamW moments, and a
    frozen bf16 copy as teacher. ``shards`` > 1 splits weights, gradients and optimizer states over that many GPUs
    (FSDP full sharding); activations are per GPU either way. Trainable adapters are fp32."""
    if lora_r:
        trainable = shape.lora_params(lora_r)
        linear_bytes = shape.linear_params() * (NF4_BITS / 8 if four_bit else 2)
        frozen = linear_bytes + 2 * shape.other_params()
        teacher = 4 * trainable
    else:
        if four_bit:
            raise ValueError("full fine-tuning needs trainable weights; 4-bit bases only train adapters (lora_r)")
        trainable, frozen = shape.params(), 0.0
        teacher = 2 * trainable
    out = {
        "frozen weights": frozen / shards / GB,
        "trainable weights": 4 * trainable / shards / GB,
        "gradients": 4 * trainable / shards / GB,
        "AdamW moments": 8 * trainable / shards / GB,
        "teacher": teacher / shards / GB,
        "EMA": (4 * trainable if ema else 0) / shards / GB,
        "activations": activation_bytes(shape, step.tokens, step.loss_positions, lora_r, checkpointing) / GB,
    }
    out["total"] = sum(out.values())
    return out
