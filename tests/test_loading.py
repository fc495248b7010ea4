"""Loading dLLM folders: the built-in model with a tokenizer, a model that exists only as remote code, mask-token
resolution and its errors, logit shifting (Dream) and the 4-bit switch."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest
import torch

from dtm.diffusion.sampler import generate
from dtm.models import DiffusionLM, load_model, load_tokenizer, resolve_mask_token_id
from dtm.models.loading import four_bit_config, has_shifted_logits
from tests.hf_fixtures import builtin_model_folder, char_tokenizer, remote_code_folder


def test_builtin_model_with_tokenizer_loads_in_bf16(tmp_path):
    folder = builtin_model_folder(tmp_path / "m")
    tokenizer = load_tokenizer(folder)
    model = load_model(folder, dtype="bfloat16", tokenizer=tokenizer)
    assert model.mask_token_id == tokenizer.mask_token_id == char_tokenizer().mask_token_id
    assert next(model.parameters()).dtype == torch.bfloat16
    ids = tokenizer("12+3", return_tensors="pt")["input_ids"]
    select = torch.zeros_like(ids, dtype=torch.bool)
    select[:, -2:] = True
    assert model(ids, select=select).shape == (2, len(tokenizer))


def test_folder_without_tokenizer_gives_none(tmp_path):
    folder = builtin_model_folder(tmp_path / "m")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    assert load_tokenizer(folder) is None


def test_remote_code_model_loads_and_agrees_with_its_own_forward(tmp_path):
    folder = remote_code_folder(tmp_path / "remote")
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_model(folder)
    model = load_model(folder, trust_remote_code=True)
    assert isinstance(model, DiffusionLM) and type(model.model).__name__ == "ToyDLM"
    assert model.mask_token_id == char_tokenizer().mask_token_id  # from the remote config
    model.eval()
    ids = torch.randint(len(char_tokenizer()), (2, 9))
    select = torch.zeros_like(ids, dtype=torch.bool)
    select[0, 3] = select[1, 5:] = True
    full = model.model(input_ids=ids).logits
    torch.testing.assert_close(model(ids, select=select), full[select])


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_loaded_models_decode_with_a_cache_only_if_their_forward_takes_one(tmp_path, cache):
    """A loaded transformers Llama takes past_key_values and position_ids; the remote-code toy model takes neither,
    and decoding it with a cache is refused by name (without a cache it decodes)."""
    prompt = torch.randint(2, 20, (2, 3))
    builtin = load_model(builtin_model_folder(tmp_path / "m"))
    out = generate(builtin, prompt, 8, 4, 8, mask_token_id=builtin.mask_token_id, cache=cache, threshold=0.5)
    assert not (out[:, 3:] == builtin.mask_token_id).any()
    toy = load_model(remote_code_folder(tmp_path / "remote"), trust_remote_code=True)
    with pytest.raises(ValueError, match=r"ToyDLM\.forward takes no past_key_values or position_ids"):
        generate(toy, prompt, 8, 4, 8, mask_token_id=toy.mask_token_id, cache=cache)
    out = generate(toy, prompt, 8, 4, 8, mask_token_id=toy.mask_token_id)
    assert not (out[:, 3:] == toy.mask_token_id).any()


@pytest.mark.parametrize("split", [True, False])
def test_shift_logits_reads_the_previous_position(tmp_path, split):
    folder = builtin_model_folder(tmp_path / "m") if split else remote_code_folder(tmp_path / "r")
    plain = load_model(folder, trust_remote_code=True).eval()
    shifted = load_model(folder, trust_remote_code=True, shift_logits=True).eval()
    ids = torch.randint(40, (2, 7))
    select = torch.zeros_like(ids, dtype=torch.bool)
    select[0, :2] = select[1, 4:] = True  # position 0 keeps its own output
    full = plain(ids)
    expected = torch.cat([full[0, [0, 0]], full[1, [3, 4, 5]]])
    torch.testing.assert_close(shifted(ids, select=select), expected)
    torch.testing.assert_close(shifted(ids)[:, 1:], full[:, :-1])


def test_dream_model_type_is_detected_as_shifted(tmp_path):
    assert has_shifted_logits(SimpleNamespace(model_type="Dream"))
    assert not has_shifted_logits(SimpleNamespace(model_type="llada"))
    assert not load_model(builtin_model_folder(tmp_path / "m")).shift_logits


def test_mask_token_resolution_order_and_error():
    tokenizer = char_tokenizer()
    with_id, without = SimpleNamespace(mask_token_id=7), SimpleNamespace()
    assert resolve_mask_token_id(with_id, tokenizer, 3, "m") == 3
    assert resolve_mask_token_id(with_id, tokenizer, None, "m") == 7
    assert resolve_mask_token_id(without, tokenizer, None, "m") == tokenizer.mask_token_id
    with pytest.raises(ValueError, match=r"m: no mask token.*model\.mask_token_id.*126336"):
        resolve_mask_token_id(without, char_tokenizer(with_mask=False), None, "m")


def test_model_and_tokenizer_without_mask_token_fail_clearly(tmp_path):
    folder = builtin_model_folder(tmp_path / "m", with_mask=False)
    with pytest.raises(ValueError, match="no mask token"):
        load_model(folder, tokenizer=load_tokenizer(folder))
    assert load_model(folder, mask_token_id=2).mask_token_id == 2


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        load_model(tmp_path / "nope")


def test_four_bit_without_bitsandbytes_says_how_to_install(monkeypatch):
    find_spec = importlib.util.find_spec

    def without_bitsandbytes(name, *args):
        return None if name == "bitsandbytes" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_bitsandbytes)
    with pytest.raises(ImportError, match=r"pip install -r requirements-optional.txt \(or bitsandbytes\)"):
        four_bit_config()
