"""Tests for dtm.training.data: JSONL token datasets, left padding and task datasets."""

from __future__ import annotations

import json
import random

import pytest
import torch

from dtm.tasks.increment import DIGIT0, EOS, IncrementTask
from dtm.training.data import TokenDataset, from_task, left_pad, load_jsonl

VOCAB = 14


def write_lines(path, lines) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def record(prompt, response) -> str:
    return json.dumps({"prompt": prompt, "response": response})


def reference_left_pad(rows, pad_id):
    width = max(len(r) for r in rows)
    ids = [[pad_id] * (width - len(r)) + list(r) for r in rows]
    mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
    return ids, mask


def test_load_jsonl_left_pads_prompts(tmp_path):
    prompts = [[5, 6, 7], [8], [4, 9, 10, 11, 12], [13, 13]]
    responses = [[4, 5, 3], [6, 7, 3], [8, 9, 3], [10, 11, 3]]
    path = tmp_path / "data.jsonl"
    write_lines(path, [record(p, r) for p, r in zip(prompts, responses, strict=True)])
    data = load_jsonl(path, VOCAB)
    ids, mask = reference_left_pad(prompts, 0)
    assert len(data) == 4
    assert data.prompts.tolist() == ids
    assert data.attention_mask.tolist() == mask
    assert data.responses.tolist() == responses
    assert data.prompts.dtype == data.responses.dtype == torch.long
    # the unpadded tokens of each row are exactly its prompt
    for row, m, prompt in zip(data.prompts, data.attention_mask, prompts, strict=True):
        assert row[m.bool()].tolist() == prompt


def test_load_jsonl_custom_pad_and_blank_lines(tmp_path):
    path = tmp_path / "data.jsonl"
    write_lines(path, [record([5, 6], [4]), "", "   ", record([7], [5]), ""])
    data = load_jsonl(path, VOCAB, pad_id=2)
    assert data.prompts.tolist() == [[5, 6], [2, 7]]
    assert data.attention_mask.tolist() == [[1, 1], [0, 1]]
    assert data.responses.tolist() == [[4], [5]]


def test_load_jsonl_accepts_str_path_and_batch(tmp_path):
    path = tmp_path / "data.jsonl"
    write_lines(path, [record([4 + i], [5 + i, 3]) for i in range(5)])
    data = load_jsonl(str(path), VOCAB)
    prompts, mask, responses = data.batch(torch.tensor([3, 0, 3]))
    assert prompts.tolist() == [[7], [4], [7]]
    assert mask.tolist() == [[1], [1], [1]]
    assert responses.tolist() == [[8, 3], [5, 3], [8, 3]]


def test_batch_drops_the_padding_columns_all_its_rows_share():
    data = load_jsonl_rows([[4], [4, 5, 6], [5, 6]])
    prompts, mask, _ = data.batch(torch.tensor([0, 2]))
    assert prompts.tolist() == [[0, 4], [5, 6]] and mask.tolist() == [[0, 1], [1, 1]]
    prompts, mask, _ = data.batch(torch.tensor([0, 0]))
    assert prompts.tolist() == [[4], [4]] and mask.tolist() == [[1], [1]]
    prompts, mask, _ = data.batch(torch.tensor([1, 0]))
    assert prompts.tolist() == [[4, 5, 6], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def load_jsonl_rows(prompts: list[list[int]]) -> TokenDataset:
    ids, mask = left_pad(prompts, 0)
    return TokenDataset(ids, mask, torch.full((len(prompts), 2), 3))


@pytest.mark.parametrize(
    ("bad_line", "fragment"),
    [
        ('{"prompt": [4, 5], "response": [4, 5]', "invalid JSON"),
        ("not json at all", "invalid JSON"),
        ('{"prompt": [4, 5]}', "'response'"),
        ('{"response": [4, 5]}', "'prompt'"),
        ("[4, 5]", "'prompt' and 'response'"),
        ('{"prompt": [4, 5.5], "response": [4, 5]}', "'prompt' must be a list of integer"),
        ('{"prompt": [4, 5], "response": ["4", 5]}', "'response' must be a list of integer"),
        ('{"prompt": [4, true], "response": [4, 5]}', "'prompt' must be a list of integer"),
        ('{"prompt": 4, "response": [4, 5]}', "'prompt' must be a list of integer"),
        ('{"prompt": [4, 5], "response": [4, 14]}', "token id 14"),
        ('{"prompt": [-1, 5], "response": [4, 5]}', "token id -1"),
        ('{"prompt": [4, 5], "response": [4, 5, 3]}', "response has 3 tokens"),
    ],
)
def test_load_jsonl_errors_name_file_and_line(tmp_path, bad_line, fragment):
    path = tmp_path / "bad.jsonl"
    # the bad record is on line 4 (a blank line still counts as a line)
    write_lines(path, [record([4], [4, 5]), record([5, 6], [6, 7]), "", bad_line, record([7], [8, 9])])
    with pytest.raises(ValueError) as info:
        load_jsonl(path, VOCAB)
    message = str(info.value)
    assert f"{path}:4" in message
    assert fragment in message


def test_load_jsonl_out_of_vocab_reports_the_vocab(tmp_path):
    path = tmp_path / "bad.jsonl"
    write_lines(path, [record([4, 20], [4])])
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 14\)") as info:
        load_jsonl(path, VOCAB)
    assert f"{path}:1" in str(info.value)
    assert len(load_jsonl(path, 21)) == 1  # fine with a larger vocabulary


def test_load_jsonl_response_length_mismatch_names_both_lengths(tmp_path):
    path = tmp_path / "bad.jsonl"
    write_lines(path, [record([4], [4, 5, 3]), record([4], [4, 5, 3]), record([4], [4, 5])])
    with pytest.raises(ValueError) as info:
        load_jsonl(path, VOCAB)
    message = str(info.value)
    assert f"{path}:3" in message
    assert "2 tokens" in message and "3" in message


@pytest.mark.parametrize("content", ["", "\n\n", "  \n"])
def test_load_jsonl_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="empty") as info:
        load_jsonl(path, VOCAB)
    assert str(path) in str(info.value)


def test_load_jsonl_missing_file(tmp_path):
    path = tmp_path / "nope" / "missing.jsonl"
    with pytest.raises(FileNotFoundError) as info:
        load_jsonl(path, VOCAB)
    assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError):
        load_jsonl(tmp_path, VOCAB)  # a folder is not a dataset file


def test_left_pad_matches_reference():
    rng = random.Random(0)
    for _ in range(20):
        rows = [[rng.randrange(1, 50) for _ in range(rng.randrange(0, 7))] for _ in range(rng.randrange(1, 6))]
        if not any(rows):
            rows.append([7])
        pad_id = rng.randrange(0, 3)
        ids, mask = left_pad(rows, pad_id)
        want_ids, want_mask = reference_left_pad(rows, pad_id)
        assert ids.tolist() == want_ids
        assert mask.tolist() == want_mask
        assert ids.dtype == mask.dtype == torch.long


def test_left_pad_empty_row_and_equal_lengths():
    ids, mask = left_pad([[], [4, 5]], pad_id=9)
    assert ids.tolist() == [[9, 9], [4, 5]]
    assert mask.tolist() == [[0, 0], [1, 1]]
    ids, mask = left_pad([[1, 2], [3, 4]], pad_id=0)
    assert ids.tolist() == [[1, 2], [3, 4]]
    assert mask.all()


def test_empty_dataset_rejected():
    empty = torch.zeros((0, 3), dtype=torch.long)
    with pytest.raises(ValueError, match="empty"):
        TokenDataset(empty, empty, empty)


def test_from_task_deterministic_in_seed():
    task = IncrementTask()
    a, b, c = from_task(task, 300, seed=3), from_task(task, 300, seed=3), from_task(task, 300, seed=4)
    assert len(a) == 300
    assert torch.equal(a.prompts, b.prompts) and torch.equal(a.responses, b.responses)
    assert torch.equal(a.attention_mask, b.attention_mask)
    assert not torch.equal(a.prompts, c.prompts)
    assert not torch.equal(a.responses, c.responses)


def test_from_task_rows_are_valid_training_demonstrations():
    task = IncrementTask()
    data = from_task(task, 500, seed=1)
    assert data.prompts.shape == (500, task.num_digits + 1)
    assert data.responses.shape == (500, task.gen_length)
    assert data.attention_mask.bool().all()
    meta = [{"digits": (row[: task.num_digits] - DIGIT0).tolist()} for row in data.prompts]
    assert task.is_valid(data.responses, meta).all()
    assert (data.responses[:, task.num_digits :] == EOS).all()
    # training prompts: even digit sum (the train split)
    assert ((data.prompts[:, : task.num_digits] - DIGIT0).sum(1) % 2 == 0).all()
    # the same prompts as the task's own train split
    assert torch.equal(data.prompts, task.prompts(500, split="train", seed=1).ids)


def test_save_load_round_trip_from_task(tmp_path):
    task = IncrementTask()
    data = from_task(task, 64, seed=0)
    path = tmp_path / "data.jsonl"
    data.save_jsonl(path)
    assert len(path.read_text().splitlines()) == 64
    loaded = load_jsonl(path, task.vocab_size)
    assert torch.equal(loaded.prompts, data.prompts)
    assert torch.equal(loaded.attention_mask, data.attention_mask)
    assert torch.equal(loaded.responses, data.responses)


def test_save_load_round_trip_left_padded(tmp_path):
    rows = [[5, 0, 6], [7], [], [4, 4, 4, 4]]  # token 0 inside a prompt is kept (the mask decides, not the id)
    ids, mask = left_pad(rows, pad_id=0)
    responses = torch.tensor([[4, 3], [5, 3], [6, 3], [7, 3]])
    path = tmp_path / "padded.jsonl"
    TokenDataset(ids, mask, responses).save_jsonl(path)
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {"prompt": [5, 0, 6], "response": [4, 3]}
    loaded = load_jsonl(path, VOCAB)
    assert torch.equal(loaded.prompts, ids)
    assert torch.equal(loaded.attention_mask, mask)
    assert torch.equal(loaded.responses, responses)
