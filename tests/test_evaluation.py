"""The evaluation harness: per-sample JSONL, accuracy tables naming their settings, exact resume after an
interruption (only for the same model, data and settings), adapters, text tasks through a tokenizer, and the
``dtm eval`` command."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from peft import LoraConfig, get_peft_model

from dtm.cli import main
from dtm.config import ConfigError
from dtm.evaluation import EvalConfig, resolve_adapter, run_eval
from dtm.memory_plan import ModelShape
from dtm.models import TinyModelConfig, build_tiny_model, load_model, save_model
from dtm.tasks import get_task
from dtm.tasks.sudoku import VOCAB_SIZE
from tests.hf_fixtures import builtin_model_folder


@pytest.fixture(scope="module")
def sudoku_model(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("sudoku") / "model"
    cfg = TinyModelConfig(vocab_size=VOCAB_SIZE, mask_token_id=1, hidden_size=32, num_layers=2, num_heads=4)
    save_model(build_tiny_model(cfg), folder)
    return folder


def config(model, out, **changes) -> EvalConfig:
    values = dict(
        model=str(model), task="sudoku_digits", gen_lengths=[16], block_length=8, num_examples=10, decode_batch=4
    )
    return EvalConfig(**(values | {"output_dir": str(out)} | changes))


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_samples_and_table_agree(sudoku_model, tmp_path):
    rows = run_eval(config(sudoku_model, tmp_path / "e"), progress=False)
    samples = lines(tmp_path / "e" / "samples-len16.jsonl")
    assert [s["index"] for s in samples] == list(range(10))
    fields = {"index", "id", "prompt", "completion", "answer", "reward", "correct", "score"}
    assert set(samples[0]) == fields | {"forward_passes", "forward_tokens", "forward_flops"}
    assert all(s["reward"] == pytest.approx(2 * s["score"]) for s in samples)  # Sudoku: reward = 2 x cell accuracy
    (row,) = rows
    assert row["accuracy"] == pytest.approx(100 * sum(s["score"] for s in samples) / 10)
    assert (row["gen_length"], row["steps"], row["block_length"], row["n"]) == (16, 8, 8, 10)
    assert row["checkpoint"] == str(sudoku_model) and row["style"] == "-"
    table = (tmp_path / "e" / "results.md").read_text()
    assert "| sudoku_digits | - | 16 | 8 | 8 | low_confidence | 0.0 | fixed |" in table
    assert json.loads((tmp_path / "e" / "results.json").read_text()) == rows


def test_each_sample_records_the_forward_passes_and_tokens_that_decoded_it(sudoku_model, tmp_path):
    """The exact sampler makes one pass over the whole sequence per decoding step; a cache makes as many passes over
    fewer tokens; FLOPs follow from the model's shape."""
    plain = run_eval(config(sudoku_model, tmp_path / "plain"), progress=False)[0]
    samples = lines(tmp_path / "plain" / "samples-len16.jsonl")
    prompt_tokens = get_task("sudoku_digits").prompts(1, split="test", seed=0).ids.shape[1]  # fixed-length prompts
    assert all(s["forward_passes"] == plain["steps"] for s in samples)
    assert all(s["forward_tokens"] == plain["steps"] * (prompt_tokens + 16) for s in samples)
    assert plain["passes_per_sample"] == plain["steps"] and plain["tokens_per_sample"] == samples[0]["forward_tokens"]
    shape = ModelShape.from_hf_config(load_model(sudoku_model).config)
    tokens = samples[0]["forward_tokens"]
    flops = shape.forward_flops(tokens, tokens * (prompt_tokens + 16), plain["steps"] * 8)
    assert all(s["forward_flops"] == flops for s in samples)
    assert plain["flops_per_sample"] == pytest.approx(flops)
    for cache in ("prefix", "dual"):
        cached = run_eval(config(sudoku_model, tmp_path / cache, cache=cache), progress=False)[0]
        assert cached["passes_per_sample"] == plain["steps"]
        assert cached["tokens_per_sample"] < plain["tokens_per_sample"]
        assert cached["flops_per_sample"] < plain["flops_per_sample"]
        table = (tmp_path / cache / "results.md").read_text()
        assert f"| fixed, {cache}/0 |" in table
        assert f"| {cached['passes_per_sample']:.1f} | {cached['tokens_per_sample']:.1f} |" in table


def test_threshold_decoding_takes_fewer_passes_and_says_so(sudoku_model, tmp_path):
    """A threshold below the untrained model's (near uniform) probabilities commits a whole block per round: two
    passes per sample instead of the fixed schedule's eight."""
    row = run_eval(config(sudoku_model, tmp_path / "tau", threshold=0.05, cache="dual"), progress=False)[0]
    assert row["passes_per_sample"] == 2 < row["steps"] and row["threshold"] == 0.05
    assert (
        "| 16 | adaptive | 8 | low_confidence | 0.0 | tau=0.05, dual/0 |"
        in (tmp_path / "tau" / "results.md").read_text()
    )


def test_interrupted_evaluation_resumes_to_identical_samples(sudoku_model, tmp_path):
    cfg = config(sudoku_model, tmp_path / "full", temperature=1.0)
    run_eval(cfg, progress=False)
    reference = (tmp_path / "full" / "samples-len16.jsonl").read_text()

    cut = config(sudoku_model, tmp_path / "cut", temperature=1.0)
    run_eval(cut, progress=False)
    path = tmp_path / "cut" / "samples-len16.jsonl"
    kept = reference.splitlines(keepends=True)[:5]  # mid-batch, plus a torn line
    path.write_text("".join(kept) + '{"index": 5, "compl')
    rows = run_eval(cut, progress=False)
    assert path.read_text() == reference
    assert rows[0]["n"] == 10 and rows[0]["reused"] == 5
    assert run_eval(cut, progress=False)[0]["reused"] == 10  # a finished evaluation reruns from its samples


def test_changed_model_at_the_same_path_is_not_resumed(sudoku_model, tmp_path):
    """Same folder, same settings, other weights: the old samples are refused, not reprinted."""
    folder = tmp_path / "model"
    shutil.copytree(sudoku_model, folder)
    run_eval(config(folder, tmp_path / "e"), progress=False)
    old = [s["completion"] for s in lines(tmp_path / "e" / "samples-len16.jsonl")]
    torch.manual_seed(5)
    cfg = TinyModelConfig(vocab_size=VOCAB_SIZE, mask_token_id=1, hidden_size=32, num_layers=2, num_heads=4)
    retrained = build_tiny_model(cfg)
    with torch.no_grad():
        for param in retrained.parameters():
            param.normal_(0, 0.5)  # outputs that depend on the input, unlike a fresh init's
    save_model(retrained, folder)  # retrained in place
    with pytest.raises(FileExistsError, match=r"samples of another model .* Use --overwrite"):
        run_eval(config(folder, tmp_path / "e"), progress=False)
    assert run_eval(config(folder, tmp_path / "e"), overwrite=True, progress=False)[0]["reused"] == 0
    run_eval(config(folder, tmp_path / "fresh"), progress=False)
    new = lines(tmp_path / "e" / "samples-len16.jsonl")
    assert new == lines(tmp_path / "fresh" / "samples-len16.jsonl")
    assert [s["completion"] for s in new] != old  # the old samples would have been wrong numbers


def test_changed_adapter_is_not_resumed(sudoku_model, tmp_path):
    model = load_model(sudoku_model)
    peft = get_peft_model(model.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft.save_pretrained(str(tmp_path / "adapter"))
    cfg = config(sudoku_model, tmp_path / "e", adapter=str(tmp_path / "adapter"))
    run_eval(cfg, progress=False)
    weights = tmp_path / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")  # one byte of the adapter changed
    with pytest.raises(FileExistsError, match="another model"):
        run_eval(cfg, progress=False)


def test_changed_data_is_not_resumed(tmp_path):
    """A local data file edited between two runs with the same settings: the old samples are refused."""
    folder = builtin_model_folder(tmp_path / "model")
    data = tmp_path / "countdown.jsonl"
    records = [{"nums": [3, 5, 7], "target": 15}, {"nums": [2, 4, 6], "target": 12}]
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = EvalConfig(
        model=str(folder),
        task="countdown",
        task_options={"source": str(data), "style": "chat"},
        gen_lengths=[8],
        block_length=8,
        num_examples=2,
        output_dir=str(tmp_path / "e"),
    )
    assert run_eval(cfg, progress=False)[0]["reused"] == 0
    assert run_eval(cfg, progress=False)[0]["reused"] == 2
    records[1]["target"] = 48
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(FileExistsError, match="other prompts at length 8"):
        run_eval(cfg, progress=False)


def test_existing_output_with_other_settings_is_not_mixed(sudoku_model, tmp_path):
    run_eval(config(sudoku_model, tmp_path / "e"), progress=False)
    first = config(sudoku_model, tmp_path / "e").num_examples
    with pytest.raises(FileExistsError, match=rf"other settings \(num_examples: {first} in the run, 4 now\); use"):
        run_eval(config(sudoku_model, tmp_path / "e", num_examples=4), progress=False)
    rows = run_eval(config(sudoku_model, tmp_path / "e", num_examples=4), overwrite=True, progress=False)
    assert rows[0]["n"] == 4


def test_fixed_length_task_rejects_other_lengths(sudoku_model, tmp_path):
    with pytest.raises(ConfigError, match="gen_lengths: task sudoku_digits has a fixed response length 16, got 32"):
        run_eval(config(sudoku_model, tmp_path / "e", gen_lengths=[32]), progress=False)
    with pytest.raises(ConfigError, match="block_length: must divide gen_length 20"):
        config(sudoku_model, tmp_path / "e", gen_lengths=[20])


def test_adapter_is_applied_and_found_in_a_named_subfolder(sudoku_model, tmp_path):
    model = load_model(sudoku_model)
    peft = get_peft_model(model.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]), adapter_name="student")
    torch.manual_seed(1)
    for name, param in peft.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 2.0)  # a non-trivial adapter: outputs change
    peft.save_pretrained(str(tmp_path / "adapter"))
    assert resolve_adapter(tmp_path / "adapter") == tmp_path / "adapter" / "student"
    run_eval(config(sudoku_model, tmp_path / "plain"), progress=False)
    adapted = run_eval(config(sudoku_model, tmp_path / "lora", adapter=str(tmp_path / "adapter")), progress=False)
    assert adapted[0]["checkpoint"].endswith("adapter")
    completions = [lines(tmp_path / d / "samples-len16.jsonl") for d in ("plain", "lora")]
    assert [s["completion"] for s in completions[0]] != [s["completion"] for s in completions[1]]
    with pytest.raises(FileNotFoundError, match=r"no adapter_config\.json"):
        resolve_adapter(tmp_path)


def test_text_task_at_two_lengths_names_its_style(tmp_path):
    folder = builtin_model_folder(tmp_path / "model")
    cfg = EvalConfig(
        model=str(folder),
        task="countdown",
        task_options={"source": "generate", "style": "chat"},
        gen_lengths=[8, 16],
        block_length=8,
        num_examples=3,
        output_dir=str(tmp_path / "e"),
    )
    rows = run_eval(cfg, progress=False)
    assert [(r["gen_length"], r["steps"], r["style"]) for r in rows] == [(8, 4, "chat"), (16, 8, "chat")]
    sample = lines(tmp_path / "e" / "samples-len8.jsonl")[0]
    assert sample["prompt"].startswith("<|user|>") and sample["reward"] in (0.0, 0.1, 1.0)
    assert sample["answer"] is None or isinstance(sample["answer"], str)


def test_eval_command(sudoku_model, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["eval", "--model", str(sudoku_model), "--task", "sudoku_digits", "--gen-lengths", "16"]
    main([*argv, "--block-length", "8", "--num-examples", "5", "--output-dir", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert "| sudoku_digits | - | 16 | 8 | 8 | low_confidence | 0.0 | fixed |" in printed
    assert f"length 16: 0 of 5 samples reused from {out}" in printed
    assert len(lines(out / "samples-len16.jsonl")) == 5
    main([*argv, "--block-length", "8", "--num-examples", "5", "--output-dir", str(out), "--no-progress"])
    assert f"length 16: 5 of 5 samples reused from {out}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", str(sudoku_model), "--task", "nope", "--output-dir", str(out)])
    assert exit_info.value.code == 2
    assert "task: unknown task 'nope'" in capsys.readouterr().err


def test_a_missing_data_file_fails_before_the_weights_load_and_leaves_no_folder(tmp_path, monkeypatch):
    folder = builtin_model_folder(tmp_path / "model")
    loaded = []
    import dtm.evaluation as evaluation

    monkeypatch.setattr(evaluation, "load_for_eval", lambda *args: loaded.append(args))
    cfg = EvalConfig(
        model=str(folder),
        task="countdown",
        task_options={"source": str(tmp_path / "missing.jsonl")},
        gen_lengths=[8],
        block_length=8,
        output_dir=str(tmp_path / "e"),
    )
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        run_eval(cfg, progress=False)
    assert loaded == [] and not (tmp_path / "e").exists()


def test_a_folder_without_samples_takes_new_settings(sudoku_model, tmp_path):
    out = tmp_path / "e"
    out.mkdir()
    (out / "eval_config.yaml").write_text("model: other\n")  # left by a run that failed before any sample
    rows = run_eval(config(sudoku_model, out), progress=False)
    assert rows[0]["reused"] == 0 and len(lines(out / "samples-len16.jsonl")) == rows[0]["n"]
