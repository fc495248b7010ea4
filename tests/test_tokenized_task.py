"""Text tasks through a tokenizer: chat-template prompts, left padding, EOS-cut decoding into the text reward, prompt
length limits, task building errors, and a DTM run on a text task with a model folder that has a tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dtm.config.sampling import SamplingConfig
from dtm.models import load_tokenizer
from dtm.tasks import build_task
from dtm.tasks.text import get_text_task
from dtm.tasks.tokenized import PromptTooLongError, TokenizedTextTask
from dtm.training.dtm import DTMConfig, DTMTrainer
from tests.hf_fixtures import builtin_model_folder, char_tokenizer

GSM8K_FILE = Path(__file__).parent / "fixtures" / "text" / "gsm8k.jsonl"


def countdown(max_prompt_length: int = 0, truncation: str = "error") -> TokenizedTextTask:
    tokenizer = char_tokenizer()
    task = get_text_task("countdown", source="generate")
    return TokenizedTextTask(task, tokenizer, 64, tokenizer.mask_token_id, max_prompt_length, truncation)


def test_prompts_are_chat_template_renderings_left_padded():
    task = countdown()
    batch = task.prompts(4, split="train", seed=0)
    assert len(batch) == 4 and batch.ids.shape == batch.attention_mask.shape
    for row, mask, meta in zip(batch.ids, batch.attention_mask, batch.meta, strict=True):
        text = task.prompt_text(meta)
        assert text.startswith("<|user|>") and text.endswith("<|assistant|>") and str(meta["target"]) in text
        kept = row[mask.bool()].tolist()
        assert task.tokenizer.decode(kept) == text
        assert mask.tolist() == sorted(mask.tolist())  # padding on the left only
        assert (row[~mask.bool()] == task.pad_token_id).all()


def test_reward_decodes_up_to_eos_and_scores_with_the_text_reward():
    task = countdown()
    batch = task.prompts(2, split="test", seed=1)
    solution = batch.meta[0]["solution"]
    eos = task.tokenizer.eos_token_id

    def response(text: str) -> list[int]:
        ids = task.tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
        ids += task.tokenizer("<answer>1</answer>", add_special_tokens=False)["input_ids"]  # after EOS: ignored
        return (ids + [eos] * task.gen_length)[: task.gen_length]

    right = response(f"<answer>{solution}</answer>")
    no_tag = response("no idea")
    responses = torch.tensor([right, no_tag])
    assert task.reward(responses, batch.meta).tolist() == [1.0, 0.0]
    assert task.is_correct(responses, batch.meta).tolist() == [True, False]
    assert task.render(right) == f"<answer>{solution}</answer>"


def test_too_long_prompts_error_or_truncate_with_warning():
    with pytest.raises(PromptTooLongError, match=r"4 of 4 countdown prompts are longer than max_prompt_length=20"):
        countdown(max_prompt_length=20).prompts(4, seed=0)
    task = countdown(max_prompt_length=20, truncation="left")
    with pytest.warns(UserWarning, match="keeping their last 20 tokens"):
        batch = task.prompts(4, seed=0)
    assert batch.ids.shape[1] == 20
    full = countdown().prompts(4, seed=0)
    torch.testing.assert_close(batch.ids, full.ids[:, -20:])


def test_build_task_explains_what_a_text_task_needs():
    with pytest.raises(ValueError, match="unknown task 'nope'; available: countdown, gsm8k, increment"):
        build_task("nope")
    with pytest.raises(ValueError, match="text task and needs a model folder with a tokenizer"):
        build_task("countdown")
    assert build_task("increment").name == "increment"
    task = build_task("sudoku", tokenizer=char_tokenizer(), gen_length=32, mask_token_id=2)
    assert isinstance(task, TokenizedTextTask) and task.text_task.name == "sudoku"


def test_dtm_trains_on_a_text_task_from_a_model_folder_with_tokenizer(tmp_path):
    folder = builtin_model_folder(tmp_path / "model")
    cfg = DTMConfig(
        base_model=str(folder),
        task="countdown",
        task_options={"source": "generate", "style": "chat"},
        output_dir=str(tmp_path / "run"),
        h=1.0,
        a_end=1.0,
        steps_per_h=2,
        prompt_pool=8,
        buffer_prompts=4,
        buffer_completions=2,
        refresh_every=0,
        refresh_prompts=0,
        micro_batch=4,
        eval_prompts=0,
        sampling=SamplingConfig(gen_length=16, block_length=8, decode_steps=4),
    )
    trainer = DTMTrainer(cfg, progress=False)
    assert isinstance(trainer.task, TokenizedTextTask) and trainer.mask_id == char_tokenizer().mask_token_id
    trainer.train()
    assert trainer.state.step == 2 and trainer.state.reward_errors == 0 and trainer.state.rollouts == 8
    saved = load_tokenizer(tmp_path / "run" / "final" / "model")  # the final folder is complete for `dtm eval`
    assert saved is not None and saved.get_vocab() == char_tokenizer().get_vocab()


# ---------------------------------------------------------------------------------------------- demonstrations


@pytest.mark.parametrize("style", ["reasoning", "chat"])
@pytest.mark.parametrize(("name", "source"), [("countdown", "generate"), ("gsm8k", str(GSM8K_FILE))])
def test_demonstrations_are_rewarded_as_correct_answers(name, source, style):
    task = TokenizedTextTask(get_text_task(name, source=source, style=style), char_tokenizer(), 160, 2)
    prompts = task.prompts(3, split="train", seed=0)
    responses = task.demonstrations(prompts, torch.Generator())
    assert responses.shape == (3, 160)
    assert task.reward(responses, prompts.meta).tolist() == [1.0] * 3
    for row, meta in zip(responses.tolist(), prompts.meta, strict=True):
        # The chat template's end of turn follows the answer; EOS pads the rest.
        text = task.tokenizer.decode(row)
        assert text.startswith(task.text_task.demonstration(meta) + "<eos>")
        assert set(row[len(task.response_ids(meta)) :]) == {task.tokenizer.eos_token_id}


def test_a_demonstration_is_what_the_template_puts_after_the_generation_prompt():
    task = countdown()
    meta = task.prompts(1, seed=0).meta[0]
    conversation = task.prompt_text(meta) + task.response_text(meta)
    messages = [*task.text_task.prompt(meta), {"role": "assistant", "content": task.text_task.demonstration(meta)}]
    assert conversation == task.tokenizer.apply_chat_template(messages, tokenize=False)
    plain = char_tokenizer()
    plain.chat_template = None
    task = TokenizedTextTask(task.text_task, plain, 64, 2)
    assert task.response_text(meta) == task.text_task.demonstration(meta) + "<eos>"


def test_demonstrations_that_cannot_be_cut_out_or_do_not_fit_are_errors():
    task = countdown()
    prompts = task.prompts(2, seed=0)
    short = TokenizedTextTask(task.text_task, task.tokenizer, 8, 2)
    with pytest.raises(ValueError, match=r"a countdown demonstration has \d+ tokens, gen_length is 8"):
        short.demonstrations(prompts, torch.Generator())
    task.tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}|{% endfor %}<|assistant|>"
    with pytest.raises(ValueError, match="the answer cannot be cut out"):
        task.response_text(prompts.meta[0])
    with pytest.raises(ValueError, match="math500 has no demonstrations"):
        get_text_task("math500").demonstration({"question": "1+1?", "answer": "2"})


def test_responses_end_at_the_templates_end_of_turn_token_too():
    """A template that ends turns with <|im_end|> while EOS is <eos>: text after the end of turn is not scored."""
    tokenizer = char_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_end|>"]})
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}<|im_end|>{% endfor %}<|assistant|>"
    task = TokenizedTextTask(get_text_task("gsm8k", source=str(GSM8K_FILE)), tokenizer, 48, 2)
    meta = task.prompts(1, seed=0).meta[0]
    ids = tokenizer(f"\\boxed{{{meta['answer']}}}<|im_end|>\\boxed{{7}}", add_special_tokens=False)["input_ids"]
    responses = torch.tensor([ids + [tokenizer.eos_token_id] * (48 - len(ids))])
    assert task.render(responses[0].tolist()) == f"\\boxed{{{meta['answer']}}}"
    assert task.reward(responses, [meta]).tolist() == [1.0]
