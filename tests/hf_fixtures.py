"""Builders for offline Hugging Face folders used by tests: a character-level tokenizer with a chat template and a
mask token, the built-in model saved beside it, and a toy model that loads only through remote code."""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from dtm.models import TinyModelConfig, build_tiny_model, save_model

SPECIALS = ["<pad>", "<unk>", "<mask>", "<eos>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
REMOTE_CODE = Path(__file__).parent / "fixtures" / "remote_code"


def char_tokenizer(with_mask: bool = True) -> PreTrainedTokenizerFast:
    """One token per printable ASCII character plus special tokens; decoding concatenates characters."""
    specials = SPECIALS if with_mask else [t for t in SPECIALS if t != "<mask>"]
    vocab = {tok: i for i, tok in enumerate(specials + list(string.printable))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<eos>",
        mask_token="<mask>" if with_mask else None,
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def builtin_model_folder(path: Path, with_mask: bool = True, seed: int = 0, **shape: int) -> Path:
    """The built-in model sized to the character tokenizer, saved with it (mask id from the tokenizer)."""
    tokenizer = char_tokenizer(with_mask)
    torch.manual_seed(seed)
    cfg = dict(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_length=1024) | shape
    mask_id = tokenizer.mask_token_id if with_mask else 0
    model = build_tiny_model(TinyModelConfig(vocab_size=len(tokenizer), mask_token_id=mask_id, **cfg))
    save_model(model, path)
    if not with_mask:  # a model that names no mask token anywhere
        config = json.loads((path / "config.json").read_text())
        config.pop("mask_token_id", None)
        (path / "config.json").write_text(json.dumps(config))
    tokenizer.save_pretrained(str(path))
    return path


def remote_code_folder(path: Path, seed: int = 0) -> Path:
    """The toy remote-code model with the character tokenizer; its config names the tokenizer's mask token."""
    import importlib.util
    import sys

    path.mkdir(parents=True, exist_ok=True)
    for name in ("configuration_toy_dlm.py", "modeling_toy_dlm.py"):
        shutil.copy(REMOTE_CODE / name, path / name)
    tokenizer = char_tokenizer()
    tokenizer.save_pretrained(str(path))
    package = "toy_dlm_fixture"
    if package not in sys.modules:
        spec = importlib.util.spec_from_file_location(package, REMOTE_CODE / "__init__.py")
        module = importlib.util.module_from_spec(spec)
        module.__path__ = [str(REMOTE_CODE)]
        sys.modules[package] = module
    from toy_dlm_fixture.modeling_toy_dlm import ToyDLM, ToyDLMConfig

    torch.manual_seed(seed)
    config = ToyDLMConfig(vocab_size=len(tokenizer), mask_token_id=tokenizer.mask_token_id)
    config.auto_map = {
        "AutoConfig": "configuration_toy_dlm.ToyDLMConfig",
        "AutoModel": "modeling_toy_dlm.ToyDLM",
    }
    ToyDLM(config).save_pretrained(str(path))
    return path
