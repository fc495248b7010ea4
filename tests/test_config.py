"""Tests for dtm.config: YAML loading, overrides, type checking and error messages."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from dtm.config import ConfigError, check, describe, from_dict, load_config, save_config, to_dict


@dataclass
class Optim:
    lr: float = 1e-4
    steps: int = 100
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")


@dataclass
class Model:
    name: str = "tiny"
    layers: list[int] = field(default_factory=lambda: [1, 2])
    dtype: Literal["float32", "bfloat16"] = "float32"


@dataclass
class Cfg:
    model: Model = field(default_factory=Model)
    optim: Optim = field(default_factory=Optim)
    seed: int = 0
    use_lora: bool = False
    max_len: int | None = None
    tags: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def yaml_file(tmp_path):
    def write(text: str):
        path = tmp_path / "cfg.yaml"
        path.write_text(text)
        return path

    return write


def test_defaults_without_file():
    assert load_config(Cfg) == Cfg()


def test_load_yaml_file(yaml_file):
    path = yaml_file("seed: 3\nmodel:\n  name: big\n  dtype: bfloat16\noptim:\n  lr: 2\n  betas: [0.5, 0.6]\n")
    cfg = load_config(Cfg, path)
    assert cfg.seed == 3
    assert cfg.model == Model(name="big", dtype="bfloat16")
    assert cfg.optim.lr == 2.0 and isinstance(cfg.optim.lr, float)  # int accepted for float
    assert cfg.optim.betas == (0.5, 0.6)
    assert cfg.optim.steps == 100  # untouched default inside a given section


def test_empty_file_gives_defaults(yaml_file):
    assert load_config(Cfg, yaml_file("")) == Cfg()


def test_overrides(yaml_file):
    path = yaml_file("optim:\n  lr: 0.5\n")
    overrides = ["optim.lr=1e-3", "model.layers=[3,4]", "use_lora=true", "max_len=64", "tags=[a, b]"]
    cfg = load_config(Cfg, path, overrides)
    assert cfg.optim.lr == pytest.approx(1e-3)  # YAML reads "1e-3" as a string; converted for float
    assert cfg.model.layers == [3, 4]
    assert cfg.use_lora is True
    assert cfg.max_len == 64
    assert cfg.tags == ["a", "b"]


def test_override_optional_back_to_none():
    assert load_config(Cfg, overrides=["max_len=64", "max_len=null"]).max_len is None


def test_unknown_key_suggests_close_match(yaml_file):
    path = yaml_file("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: optim\.lrr: unknown key; did you mean 'lr'\?"):
        load_config(Cfg, path)


def test_unknown_key_lists_valid_keys_when_nothing_close():
    with pytest.raises(ConfigError, match=r"zzz: unknown key; valid keys: max_len, model, optim, options, seed"):
        from_dict(Cfg, {"zzz": 1})


def test_unknown_override_key_suggests():
    with pytest.raises(ConfigError, match=r"override 'optim\.step=5': optim\.step: .*did you mean 'steps'\?"):
        load_config(Cfg, overrides=["optim.step=5"])
    with pytest.raises(ConfigError, match=r"override 'optm\.lr=1': optm: .*did you mean 'optim'\?"):
        load_config(Cfg, overrides=["optm.lr=1"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"seed": "3"}, "seed: expected int, got str '3'"),
        ({"seed": True}, "seed: expected int, got bool True"),
        ({"seed": 1.5}, "seed: expected int, got float 1.5"),
        ({"use_lora": 1}, "use_lora: expected bool, got int 1"),
        ({"optim": {"lr": "fast"}}, "optim.lr: expected float, got str 'fast'"),
        ({"model": {"name": 5}}, "model.name: expected str, got int 5"),
        ({"model": {"layers": [1, "x"]}}, "model.layers[1]: expected int, got str 'x'"),
        ({"model": {"layers": 3}}, "model.layers: expected list[int], got int 3"),
        ({"optim": {"betas": [0.9]}}, "optim.betas: expected 2 items, got 1"),
        ({"optim": 3}, "optim: expected Optim, got int 3"),
        ({"max_len": "long"}, "max_len: expected int, got str 'long'"),
    ],
)
def test_wrong_type_names_key(data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(Cfg, data)
    assert str(info.value) == message


def test_wrong_type_names_file(yaml_file):
    path = yaml_file("seed: abc\n")
    with pytest.raises(ConfigError) as info:
        load_config(Cfg, path)
    assert str(info.value) == f"{path}: seed: expected int, got str 'abc'"


def test_wrong_type_in_override_names_override(yaml_file):
    with pytest.raises(ConfigError) as info:
        load_config(Cfg, yaml_file("seed: 1\n"), ["optim.steps=many"])
    assert str(info.value) == "override 'optim.steps=many': optim.steps: expected int, got str 'many'"


def test_literal_lists_allowed_values():
    with pytest.raises(ConfigError) as info:
        load_config(Cfg, overrides=["model.dtype=fp16"])
    assert "model.dtype: must be one of 'float32', 'bfloat16', got 'fp16'" in str(info.value)


def test_post_init_check_names_dotted_key_and_file(yaml_file):
    path = yaml_file("optim:\n  lr: -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(Cfg, path)
    assert str(info.value) == f"{path}: optim.lr: must be > 0, got -1.0"


def test_check_directly():
    with pytest.raises(ConfigError, match=r"^lr: must be > 0, got 0$"):
        Optim(lr=0)


def test_non_mapping_yaml_names_file(yaml_file):
    path = yaml_file("- a\n- b\n")
    with pytest.raises(ConfigError) as info:
        load_config(Cfg, path)
    assert str(info.value) == f"{path}: top level must be a mapping of keys, got list"


def test_invalid_yaml_names_file(yaml_file):
    path = yaml_file("seed: [1\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: invalid YAML"):
        load_config(Cfg, path)


@pytest.mark.parametrize("override", ["seed", "=3", "  =x"])
def test_bad_override_syntax(override):
    with pytest.raises(ConfigError) as info:
        load_config(Cfg, overrides=[override])
    assert str(info.value) == f"override {override!r}: expected 'key=value' or 'section.key=value'"


def test_override_into_non_section():
    with pytest.raises(ConfigError) as info:
        load_config(Cfg, overrides=["seed.x=1"])
    assert str(info.value) == "override 'seed.x=1': seed is not a section, cannot set seed.x"


def test_override_into_section_set_to_scalar_in_file(yaml_file):
    with pytest.raises(ConfigError, match=r"override 'optim\.lr=1': optim is set to 3, not a section"):
        load_config(Cfg, yaml_file("optim: 3\n"), ["optim.lr=1"])


def test_overrides_into_free_form_mappings_may_nest(yaml_file):
    path = yaml_file("options:\n  dtm: {h: 1.0}\n  style: x\n")
    cfg = load_config(Cfg, path, ["options.dtm.h=2.5", "options.wd1.psi=2", "options.style=y"])
    assert cfg.options == {"dtm": {"h": 2.5}, "style": "y", "wd1": {"psi": 2}}
    with pytest.raises(ConfigError, match=r"options\.style is set to 'x', not a mapping"):
        load_config(Cfg, path, ["options.style.x=1"])


def test_missing_required_key():
    @dataclass
    class Required:
        path: str

    with pytest.raises(ConfigError, match=r"^src\.yaml: path: missing required key$"):
        from_dict(Required, {}, source="src.yaml")


def test_round_trip(tmp_path):
    cfg = load_config(Cfg, overrides=["optim.lr=3e-5", "model.layers=[7]", "tags=[x]", "max_len=8"])
    assert to_dict(cfg)["optim"]["betas"] == [0.9, 0.999]  # tuples become lists
    path = tmp_path / "sub" / "saved.yaml"
    save_config(cfg, path)
    assert load_config(Cfg, path) == cfg


@pytest.mark.parametrize("kind", ["pretrain", "sft", "dtm", "wd1"])
def test_every_training_command_takes_the_one_optimizer_section(kind):
    from dtm.config.optimizer import OptimizerSettings
    from dtm.config.reference import config_class

    cls = config_class(kind)
    shared = {row.key: row.help for row in describe(OptimizerSettings)}
    assert issubclass(cls, OptimizerSettings)
    assert {row.key: row.help for row in describe(cls) if row.key in shared} == shared


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("eps=0", "eps: must be positive, got 0"),
        ("weight_decay=-0.1", "weight_decay: must be >= 0, got -0.1"),
        ("lr_min=1", "lr_min: must be in [0, lr=0.003], got 1"),
    ],
)
def test_optimizer_keys_are_checked_for_pretraining_too(override, message):
    from dtm.config.pretrain import PretrainConfig

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(PretrainConfig, None, [override])
