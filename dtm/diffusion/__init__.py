"""Pure tensor code: the forward masking process, SAR decoding, and the losses. No I/O here."""

from dtm.diffusion.losses import (
    ControlVariate,
    cdtm_loss,
    masked_diffusion_loss,
    optimal_control_variate,
    position_weights,
    tilt_shift,
)
from dtm.diffusion.masking import MaskedState, mask_tokens, sar_masked_states, uniform_masked_states
from dtm.diffusion.sampler import generate, steps_per_block, tokens_per_step

__all__ = [
    "ControlVariate",
    "MaskedState",
    "cdtm_loss",
    "generate",
    "mask_tokens",
    "masked_diffusion_loss",
    "optimal_control_variate",
    "position_weights",
    "sar_masked_states",
    "steps_per_block",
    "tilt_shift",
    "tokens_per_step",
    "uniform_masked_states",
]
