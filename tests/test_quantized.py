"""A 4-bit NF4 base on CPU (bitsandbytes, from the optional extras the test command installs): the quantised model
is close to the full-precision one, a DTM run trains LoRA student and teacher adapters on it without touching the
base, and ``dtm eval`` evaluates the base with the run's adapter."""

from __future__ import annotations

import pytest
import torch

from dtm.config.evaluation import EvalConfig
from dtm.config.model import LoadOptions
from dtm.config.run import LoraSection
from dtm.evaluation import run_eval
from dtm.models import load_model, save_model
from dtm.training.dtm import DTMTrainer
from tests.shared import one_phase_config, tiny_model

pytest.importorskip("bitsandbytes", reason="the optional extras (requirements-optional.txt) are not installed")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nf4") / "base"
    save_model(tiny_model(0), folder)
    return folder


def four_bit_layers(model) -> int:
    """bitsandbytes' NF4 linear layers of ``model`` (LoRA wraps them; they stay inside)."""
    import bitsandbytes

    return sum(isinstance(m, bitsandbytes.nn.Linear4bit) for m in model.modules())


def test_nf4_model_is_close_to_the_full_precision_one(base):
    full, quantised = load_model(base), load_model(base, load_in_4bit=True)
    assert four_bit_layers(quantised.model) == 2 * 7  # q, k, v, o, gate, up, down in each of the 2 layers
    ids = torch.randint(2, 14, (4, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, out = full(ids).float(), quantised(ids).float()
    assert torch.nn.functional.cosine_similarity(ref.flatten(), out.flatten(), dim=0) > 0.98
    assert not torch.equal(ref, out)  # it is quantised


def test_dtm_trains_lora_adapters_on_a_4bit_base_and_eval_reads_them(base, tmp_path):
    cfg = one_phase_config(
        tmp_path / "run", base, finetune="lora", lora=LoraSection(r=4, alpha=8), load=LoadOptions(load_in_4bit=True)
    )
    trainer = DTMTrainer(cfg, progress=False)
    model = trainer.raw_student.model
    assert four_bit_layers(model) == 14 and {"student", "teacher"} <= set(model.peft_config)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if "lora" not in n}
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora" in n and ".student." in n}
    trainer.train()
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], v) for n, v in frozen.items())  # the 4-bit base and the rest stay put
    assert any(not torch.equal(after[n], v) for n, v in lora.items())
    assert trainer.state.step == 2 and trainer.state.nonfinite_steps == 0
    rows = run_eval(
        EvalConfig(
            model=str(base),
            adapter=str(tmp_path / "run" / "final" / "adapter"),
            load=LoadOptions(load_in_4bit=True),
            task="increment",
            gen_lengths=[8],
            block_length=8,
            num_examples=8,
            output_dir=str(tmp_path / "eval"),
        ),
        progress=False,
    )
    assert rows[0]["n"] == 8 and 0 <= rows[0]["accuracy"] <= 100
