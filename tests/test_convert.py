"""AR -> masked diffusion conversion (dtm.models.convert, `dtm convert`) on a tiny causal Llama and the character
tokenizer: bidirectional attention, an added mask token and embedding row, a folder that load_model reads, a GGUF
quantisation record that does not survive, and errors before any weights are read."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from dtm.cli import main
from dtm.models import load_model, load_tokenizer
from dtm.models.convert import (
    check_bidirectional,
    load_causal_lm,
    packaged_gguf,
    save_with_tokenizer,
    to_masked_diffusion,
)
from tests.hf_fixtures import char_tokenizer


def causal_llama(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    """A tiny causal Llama with tied embeddings (as SmolLM2), randomly initialised."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def causal_folder(path, seed: int = 0):
    """A causal model folder whose tokenizer has no mask token."""
    tokenizer = char_tokenizer(with_mask=False)
    causal_llama(len(tokenizer), seed).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def test_conversion_adds_a_mask_token_and_makes_attention_bidirectional():
    tokenizer = char_tokenizer(with_mask=False)
    model = causal_llama(len(tokenizer))
    old_rows = model.get_input_embeddings().weight.detach().clone()
    with pytest.raises(ValueError, match="attention is causal"):
        check_bidirectional(model)
    diffusion = to_masked_diffusion(model, tokenizer, mask_token="<mask>")
    assert tokenizer.mask_token == "<mask>" and diffusion.mask_token_id == tokenizer.mask_token_id == len(old_rows)
    embeddings = model.get_input_embeddings().weight
    assert embeddings.shape[0] == len(tokenizer) == len(old_rows) + 1
    torch.testing.assert_close(embeddings[: len(old_rows)], old_rows)  # the pretrained rows are untouched
    assert model.get_output_embeddings().weight.data_ptr() == embeddings.data_ptr()  # still tied
    assert model.config.is_causal is False and model.config.mask_token_id == diffusion.mask_token_id
    check_bidirectional(model)


def test_the_new_row_depends_only_on_the_seed():
    rows = []
    for seed in (0, 0, 1):
        tokenizer = char_tokenizer(with_mask=False)
        model = causal_llama(len(tokenizer))
        to_masked_diffusion(model, tokenizer, seed=seed)
        rows.append(model.get_input_embeddings().weight[-1].detach().clone())
    torch.testing.assert_close(rows[0], rows[1])
    assert not torch.equal(rows[0], rows[2])


def test_a_tokenizer_with_a_mask_token_keeps_it():
    tokenizer = char_tokenizer(with_mask=True)
    model = causal_llama(len(tokenizer))
    diffusion = to_masked_diffusion(model, tokenizer, mask_token="<|unused|>")
    assert diffusion.mask_token_id == tokenizer.mask_token_id and len(tokenizer) == model.config.vocab_size
    with pytest.raises(ValueError, match="'a' is an ordinary token"):
        to_masked_diffusion(causal_llama(len(char_tokenizer(False))), char_tokenizer(False), mask_token="a")


def test_the_saved_folder_loads_as_a_bidirectional_diffusion_model(tmp_path):
    model, tokenizer = load_causal_lm(causal_folder(tmp_path / "causal"))
    diffusion = to_masked_diffusion(model, tokenizer)
    save_with_tokenizer(diffusion, tokenizer, tmp_path / "dlm")
    config = json.loads((tmp_path / "dlm" / "config.json").read_text())
    assert config["is_causal"] is False
    loaded_tokenizer = load_tokenizer(tmp_path / "dlm")
    loaded = load_model(tmp_path / "dlm", tokenizer=loaded_tokenizer)
    assert loaded.mask_token_id == loaded_tokenizer.mask_token_id == config["mask_token_id"]
    assert loaded_tokenizer.chat_template == tokenizer.chat_template
    check_bidirectional(loaded.model)
    ids = torch.tensor([[5, 9, loaded.mask_token_id, 11]])
    torch.testing.assert_close(loaded(ids), diffusion(ids))


def test_convert_command_writes_a_folder_and_refuses_to_replace_one(tmp_path, capsys):
    source = causal_folder(tmp_path / "causal")
    out = tmp_path / "dlm"
    main(["convert", str(source), "--output-dir", str(out), "--no-progress"])
    assert "saved" in capsys.readouterr().out and load_tokenizer(out).mask_token == "<|mask|>"
    with pytest.raises(SystemExit):
        main(["convert", str(source), "--output-dir", str(out)])
    assert "not empty; pass --overwrite" in capsys.readouterr().err
    main(["convert", str(source), "--output-dir", str(out), "--overwrite", "--mask-token", "<m>"])
    assert load_tokenizer(out).mask_token == "<m>"
    with pytest.raises(SystemExit):
        main(["convert", "--output-dir", str(tmp_path / "x")])  # no source
    with pytest.raises(SystemExit):
        main(["convert", str(tmp_path / "nothing"), "--output-dir", str(tmp_path / "x")])
    assert "no model at" in capsys.readouterr().err


def test_gguf_files_load_dequantised_and_quantised_models_are_refused(tmp_path, monkeypatch):
    """Left in GGUF blocks (transformers' default where it has a kernel for them), a model cannot be saved."""
    pytest.importorskip("gguf", reason="the real extra (requirements-real.txt) is not installed")
    seen = {}

    def fake_load(cls, path, **options):
        seen.update(options, path=path)
        return causal_llama(len(char_tokenizer(False)))

    monkeypatch.setattr("dtm.models.convert.AutoModelForCausalLM.from_pretrained", classmethod(fake_load))
    monkeypatch.setattr("dtm.models.convert.AutoTokenizer.from_pretrained", lambda *a, **k: char_tokenizer(False))
    (tmp_path / "model.gguf").write_bytes(b"")
    model, _ = load_causal_lm(tmp_path / "model.gguf")
    assert seen["path"] == str(tmp_path) and seen["gguf_file"] == "model.gguf"
    assert seen["quantization_config"].dequantize is True
    model.is_quantized = True
    with pytest.raises(ValueError, match="the model is quantised"):
        to_masked_diffusion(model, char_tokenizer(False))


def test_sources_that_cannot_be_read_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="'no-such-distribution' is not installed"):
        packaged_gguf("no-such-distribution")
    with pytest.raises(FileNotFoundError, match="'pyyaml' ships 0 GGUF files"):
        packaged_gguf("pyyaml")
    with pytest.raises(FileNotFoundError, match="no GGUF file at"):
        load_causal_lm(tmp_path / "missing.gguf")
    with pytest.raises(FileNotFoundError, match=r"expected a folder with config\.json, or a \.gguf file"):
        load_causal_lm(tmp_path)
