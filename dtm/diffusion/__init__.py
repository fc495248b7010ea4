"""Pure tensor code: the forward masking process, SAR decoding, the losses and the estimators of the methods DTM is
compared with.
No I/O here."""

from dtm.diffusion.losses import (
    ControlVariate,
    cdtm_loss,
    masked_diffusion_loss,
    optimal_control_variate,
    position_weights,
    tilt_shift,
)
from dtm.diffusion.masking import MaskedState, mask_tokens, masked_states, sar_masked_states, uniform_masked_states
from dtm.diffusion.peer_losses import (
    DistillationLoss,
    dmpo_weights,
    effective_sample_size,
    gdsd_loss,
    leave_one_out_advantages,
)
from dtm.diffusion.rl_losses import (
    PolicyLoss,
    block_elbo,
    block_eubo,
    group_advantages,
    grpo_loss,
    masked_mean,
    mean_field_input,
    spg_loss,
    token_log_probs,
    wd1_loss,
    wd1_weights,
)
from dtm.diffusion.sampler import generate, steps_per_block, tokens_per_step

__all__ = [
    "ControlVariate",
    "DistillationLoss",
    "MaskedState",
    "PolicyLoss",
    "block_elbo",
    "block_eubo",
    "cdtm_loss",
    "dmpo_weights",
    "effective_sample_size",
    "gdsd_loss",
    "generate",
    "group_advantages",
    "grpo_loss",
    "leave_one_out_advantages",
    "mask_tokens",
    "masked_diffusion_loss",
    "masked_mean",
    "masked_states",
    "mean_field_input",
    "optimal_control_variate",
    "position_weights",
    "sar_masked_states",
    "spg_loss",
    "steps_per_block",
    "tilt_shift",
    "token_log_probs",
    "tokens_per_step",
    "uniform_masked_states",
    "wd1_loss",
    "wd1_weights",
]
