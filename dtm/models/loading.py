"""Load any masked diffusion LM folder: the built-in model, LLaDA, Dream, or another Hugging Face dLLM.

LLaDA and Dream ship their modelling code with the weights, so they load with ``trust_remote_code=True`` from a local
folder (or a hub id when online). Options cover what 8B models need: bf16 weights, a 4-bit NF4 base through
bitsandbytes (GPU only), and the mask token id, taken from the model config, else from the tokenizer, else given.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from dtm.config.choices import Dtype
from dtm.config.model import LoadOptions
from dtm.models.base import DiffusionLM

# Model types whose outputs are shifted by one position (adapted from causal LMs).
SHIFTED_MODEL_TYPES = {"dream"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def resolve_mask_token_id(
    config: Any, tokenizer: PreTrainedTokenizerBase | None, explicit: int | None, where: str
) -> int:
    """The mask token id: ``explicit`` if given, else the model config's ``mask_token_id``, else the tokenizer's mask
    token. A model without any is an error that says how to fix it."""
    if explicit is not None:
        return int(explicit)
    from_config = getattr(config, "mask_token_id", None)
    if from_config is not None:
        return int(from_config)
    if tokenizer is not None and tokenizer.mask_token_id is not None:
        return int(tokenizer.mask_token_id)
    raise ValueError(
        f"{where}: no mask token: config.json has no mask_token_id and the tokenizer defines no mask token; "
        "set the mask token id explicitly (config key model.mask_token_id, e.g. 126336 for LLaDA)"
    )


def model_mask_token_id(path: str | Path, tokenizer: PreTrainedTokenizerBase | None, load: LoadOptions) -> int:
    """The mask token id the folder at ``path`` will load with, from its config.json alone (no weights read)."""
    config = AutoConfig.from_pretrained(str(path), trust_remote_code=load.trust_remote_code)
    return resolve_mask_token_id(config, tokenizer, load.mask_token_id, str(path))


def has_tokenizer(path: str | Path) -> bool:
    return any((Path(path) / name).is_file() for name in TOKENIZER_FILES)


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase | None:
    """The folder's tokenizer, or None for folders without one (the built-in model uses task token ids)."""
    if not has_tokenizer(path):
        return None
    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)


def _model_class(config: Any) -> type:
    auto_map = getattr(config, "auto_map", None) or {}
    if auto_map and "AutoModelForCausalLM" not in auto_map:
        return AutoModel  # remote code registered only as AutoModel (Dream)
    return AutoModelForCausalLM


def load_with_options(path: str | Path, options: LoadOptions, tokenizer: Any = None) -> DiffusionLM:
    """The model folder at ``path`` loaded with a config's ``load`` section (:class:`LoadOptions`)."""
    return load_model(
        path,
        options.mask_token_id,
        trust_remote_code=options.trust_remote_code,
        dtype=options.dtype,
        load_in_4bit=options.load_in_4bit,
        shift_logits=options.shift_logits,
        tokenizer=tokenizer,
    )


def load_model(
    path: str | Path,
    mask_token_id: int | None = None,
    *,
    trust_remote_code: bool = False,
    dtype: Dtype = "auto",
    load_in_4bit: bool = False,
    shift_logits: bool | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    **kwargs: Any,
) -> DiffusionLM:
    """Load a model folder as a :class:`DiffusionLM`.

    ``dtype``: weights' dtype ("auto" keeps the checkpoint's). ``load_in_4bit``: NF4 base with double quantisation and
    bf16 compute (needs bitsandbytes and a CUDA GPU). ``shift_logits``: None detects shifted models (Dream).
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no model checkpoint at {path}: expected a folder with config.json and weights")
    config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    options: dict[str, Any] = {"trust_remote_code": trust_remote_code, **kwargs}
    if dtype != "auto":
        options["dtype"] = getattr(torch, dtype)
    if load_in_4bit:
        options["quantization_config"] = four_bit_config()
    mask_id = resolve_mask_token_id(config, tokenizer, mask_token_id, str(path))
    hf_model = _model_class(config).from_pretrained(str(path), config=config, **options)
    if shift_logits is None:
        shift_logits = has_shifted_logits(config)
    return DiffusionLM(hf_model, mask_id, shift_logits=shift_logits)


def has_shifted_logits(config: Any) -> bool:
    """Whether the model emits position i's logits at position i - 1 (Dream: ``model_type`` "Dream")."""
    return str(getattr(config, "model_type", "")).lower() in SHIFTED_MODEL_TYPES


def four_bit_config() -> Any:
    """NF4 4-bit quantisation with double quantisation and bf16 compute (the DTM paper's base model set-up, arXiv
    2604.18739)."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ImportError("load_in_4bit needs bitsandbytes: pip install -r requirements-optional.txt (or bitsandbytes)")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
