"""Text tasks: Sudoku and Countdown generators, file and hub loaders, prompts and the registry (no network)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from dtm.errors import RunError
from dtm.tasks import sudoku_grids as sg
from dtm.tasks.text import REASONING_PREFIX, STYLES, TEXT_TASKS, TextExample, files, get_text_task
from dtm.tasks.text.arithmetic import evaluate_expression
from dtm.tasks.text.countdown import generate_countdown, problem_split, solve_countdown
from dtm.tasks.text.gsm8k import numbers_equal
from dtm.tasks.text.gsm8k import problem_split as gsm8k_split
from dtm.tasks.text.sudoku import FEW_SHOT_PUZZLES, worked_solution

FIXTURES = Path(__file__).parent / "fixtures" / "text"

# ------------------------------------------------------------------------------------------------- sudoku grids


def brute_force_count(puzzle: tuple[int, ...]) -> int:
    """Number of the 288 solution grids that agree with the puzzle's givens (independent of the solver)."""
    return sum(all(p in (0, g) for p, g in zip(puzzle, grid, strict=True)) for grid in sg.all_grids())


def test_all_grids_are_the_288_valid_grids():
    grids = sg.all_grids()
    assert len(grids) == len(set(grids)) == 288
    assert all(sg.is_solution_grid(g) for g in grids)
    assert not sg.is_solution_grid((1,) * 16)
    assert not sg.is_solution_grid(grids[0][:15])


def test_split_partitions_the_grids():
    train, test = set(sg.split_grids("train")), set(sg.split_grids("test"))
    assert train and test and not train & test
    assert train | test == set(sg.all_grids())
    assert 0.2 < len(test) / 288 < 0.4
    with pytest.raises(ValueError, match="split"):
        sg.split_grids("validation")


def test_count_solutions_matches_brute_force():
    assert sg.count_solutions((0,) * 16, limit=1000) == 288
    pairs = sg.generate_puzzles(40, "train", seed=3, min_empty=4, max_empty=12)
    for puzzle, _ in pairs:
        loose = tuple(0 if i % 3 == 0 else v for i, v in enumerate(puzzle))  # more empties: often ambiguous
        assert sg.count_solutions(loose, limit=1000) == brute_force_count(loose)
    assert sg.count_solutions((1, 1) + (0,) * 14) == 0  # inconsistent givens
    assert sg.solve((0,) * 16) is None


@pytest.mark.parametrize("split", ["train", "test"])
def test_generated_puzzles_unique_valid_and_in_split(split):
    pairs = sg.generate_puzzles(150, split, seed=0)
    split_set = set(sg.split_grids(split))
    counts = Counter()
    for puzzle, solution in pairs:
        assert sg.is_solution_grid(solution) and solution in split_set
        assert all(p in (0, s) for p, s in zip(puzzle, solution, strict=True))
        assert brute_force_count(puzzle) == 1  # unique, by enumeration of all 288 grids
        assert sg.solve(puzzle) == solution
        counts[puzzle.count(0)] += 1
    assert set(counts) <= set(range(6, 11)) and len(counts) >= 4


def test_generated_puzzles_deterministic_and_prefix_stable():
    a = sg.generate_puzzles(30, "train", seed=1)
    assert a == sg.generate_puzzles(30, "train", seed=1)
    assert a[:10] == sg.generate_puzzles(10, "train", seed=1)
    assert a != sg.generate_puzzles(30, "train", seed=2)


def test_train_and_test_puzzles_are_answer_disjoint():
    train = {s for seed in range(3) for _, s in sg.generate_puzzles(200, "train", seed)}
    test = {s for seed in range(3) for _, s in sg.generate_puzzles(200, "test", seed)}
    assert not train & test
    assert len(test) > 40  # most test grids are used


def test_make_puzzle_checks():
    grid = sg.all_grids()[0]
    import random

    with pytest.raises(ValueError, match="num_empty"):
        sg.make_puzzle(grid, 13, random.Random(0))
    with pytest.raises(ValueError, match="solution grid"):
        sg.make_puzzle((0,) * 16, 5, random.Random(0))
    assert sg.make_puzzle(grid, 0, random.Random(0)) == grid


def test_few_shot_examples_are_training_puzzles_with_correct_worked_solutions():
    for text in FEW_SHOT_PUZZLES:
        puzzle = sg.from_string(text)
        solution = sg.solve(puzzle)
        assert solution is not None and sg.grid_split(solution) == "train"
        reasoning, answer = worked_solution(puzzle)
        assert answer == sg.to_string(solution)
        assert "only completion" not in reasoning  # every step is explained by a single
        assert reasoning.count("->") == puzzle.count(0)


# ---------------------------------------------------------------------------------------------------- countdown


@pytest.mark.parametrize("split", ["train", "test"])
def test_countdown_generator_solvable(split):
    items = generate_countdown(300, split, seed=0)
    assert len(items) == 300
    for item in items:
        numbers, target = item["numbers"], item["target"]
        assert len(numbers) == 3 and all(1 <= x <= 99 for x in numbers)
        assert 1 <= target <= 100
        result = evaluate_expression(item["solution"])
        assert result is not None and result.value == target
        assert sorted(result.literals) == sorted(numbers)
        assert problem_split(numbers, target) == split
    for item in items[:60]:  # an independent brute-force solver agrees that they are solvable
        found = solve_countdown(item["numbers"], item["target"])
        assert found is not None and evaluate_expression(found).value == item["target"]


def test_countdown_generator_deterministic_and_splits_disjoint():
    a = generate_countdown(100, "train", seed=4)
    assert a == generate_countdown(100, "train", seed=4)
    assert a != generate_countdown(100, "train", seed=5)
    key = lambda item: (tuple(sorted(item["numbers"])), item["target"])  # noqa: E731
    train = {key(i) for i in generate_countdown(500, "train", seed=0)}
    test = {key(i) for i in generate_countdown(500, "test", seed=0)}
    assert not train & test
    assert solve_countdown([1, 1, 1], 100) is None


# -------------------------------------------------------------------------------------------------- gsm8k-style


@pytest.mark.parametrize("split", ["train", "test"])
def test_gsm8k_generator_gives_worked_problems_of_its_split(split):
    pytest.importorskip("reasoning_gym", reason="the real extra (requirements-real.txt) is not installed")
    task = get_text_task("gsm8k", source="generate")
    examples = task.examples(split, 30, seed=0)
    assert len(examples) == 30 and len({e.question for e in examples}) == 30
    for example in examples:
        assert gsm8k_split(example.question) == split
        assert numbers_equal(example.meta["solution"].rsplit("####", 1)[1].strip(), example.answer)
        assert task.reward(task.demonstration(example), example) == 1.0


def test_gsm8k_generator_is_deterministic_prefix_stable_and_split_disjoint():
    pytest.importorskip("reasoning_gym", reason="the real extra (requirements-real.txt) is not installed")
    task = get_text_task("gsm8k", source="generate")
    first = task.examples("train", 40, seed=3)
    assert [e.to_meta() for e in first] == [e.to_meta() for e in task.examples("train", 40, seed=3)]
    assert [e.question for e in task.examples("train", 10, seed=3)] == [e.question for e in first[:10]]
    assert [e.question for e in first] != [e.question for e in task.examples("train", 40, seed=4)]
    train = {e.question for e in task.examples("train", 400, seed=0)}
    assert not train & {e.question for e in task.examples("test", 100, seed=0)}


def test_gsm8k_generator_without_reasoning_gym_names_the_extra(monkeypatch):
    monkeypatch.setattr("dtm.tasks.text.gsm8k.importlib.util.find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"needs reasoning-gym: pip install --no-deps -r requirements-real\.txt"):
        get_text_task("gsm8k", source="generate").examples("test", 2)


# ------------------------------------------------------------------------------------------------------ loaders


@pytest.mark.parametrize("name", ["countdown", "sudoku", "gsm8k", "math500"])
def test_jsonl_and_csv_fixtures_load_the_same_examples(name):
    task = get_text_task(name)
    jsonl = task.load_file(FIXTURES / f"{name}.jsonl")
    csv_ = task.load_file(FIXTURES / f"{name}.csv")
    assert len(jsonl) == len(csv_) == 3
    for a, b in zip(jsonl, csv_, strict=True):
        assert isinstance(a, TextExample)
        assert (a.question, a.answer) == (b.question, b.answer)
        assert task.prompt(a)[0]["content"]


def test_loaded_fields():
    countdown = get_text_task("countdown").load_file(FIXTURES / "countdown.jsonl")
    assert [e.meta["numbers"] for e in countdown] == [[44, 19, 35], [2, 3, 4], [90, 5, 3]]
    assert [e.meta["target"] for e in countdown] == [98, 5, 6]
    assert countdown[1].id == "cd-2" and countdown[0].id.endswith("countdown.jsonl:1")
    assert countdown[2].id.endswith("countdown.jsonl:4")  # blank line 2 skipped, numbering kept
    gsm = get_text_task("gsm8k").load_file(FIXTURES / "gsm8k.csv")
    assert [e.answer for e in gsm] == ["12", "1300", "3.5"]
    assert "####" in gsm[0].meta["solution"]
    math = get_text_task("math500").load_file(FIXTURES / "math500.jsonl")
    assert math[0].answer == "\\frac{\\sqrt{3}}{2}" and math[0].id == "fixture/1.json"
    assert math[0].meta["subject"] == "Precalculus"
    sudoku = get_text_task("sudoku").load_file(FIXTURES / "sudoku.csv")
    assert all(sg.solve(sg.from_string(e.meta["puzzle"])) == sg.from_string(e.answer) for e in sudoku)


def test_malformed_lines_name_file_and_line(tmp_path):
    with pytest.raises(ValueError, match=r"countdown_bad\.jsonl:3: invalid JSON"):
        get_text_task("countdown").load_file(FIXTURES / "countdown_bad.jsonl")
    with pytest.raises(ValueError, match=r"sudoku_bad\.csv:3: expected 2 fields"):
        get_text_task("sudoku").load_file(FIXTURES / "sudoku_bad.csv")
    cases = [
        ("countdown", "a.jsonl", '{"nums": [1, 2, 3], "target": 6}\n{"nums": "x y", "target": 1}\n', r"a\.jsonl:2:"),
        ("countdown", "b.jsonl", '{"nums": [1, 2, 3]}\n', r"b\.jsonl:1: missing field 'target'"),
        ("countdown", "c.csv", "nums,target\n1 2 3,six\n", r"c\.csv:2: 'target' must be an integer"),
        ("countdown", "d.jsonl", "[1, 2, 3]\n", r"d\.jsonl:1: expected a JSON object"),
        ("sudoku", "e.jsonl", '{"puzzle": "0030340241202040", "solution": "1234341241232342"}\n', r"e\.jsonl:1: sol"),
        ("sudoku", "f.jsonl", '{"puzzle": "4030340241202040", "solution": "1234341241232341"}\n', r"f\.jsonl:1: the"),
        ("sudoku", "g.jsonl", '{"puzzle": "1234341241232341", "solution": "1234341241232341"}\n', r"no empty cell"),
        ("sudoku", "h.csv", "Puzzle,Solution\n003034024120204,1234341241232341\n", r"h\.csv:2: a 4x4"),
        ("gsm8k", "i.jsonl", '{"question": "q", "answer": "#### many"}\n', r"i\.jsonl:1: the answer must be a number"),
        ("gsm8k", "j.csv", 'question,answer\n"unclosed,1\n', r"j\.csv:\d+: expected 2 fields"),
        ("math500", "k.jsonl", '{"problem": "p", "answer": ""}\n', r"k\.jsonl:1: 'problem' and 'answer'"),
        ("math500", "l.csv", "problem,problem\np,q\n", r"l\.csv:1: the header needs distinct"),
    ]
    for name, filename, content, pattern in cases:
        path = tmp_path / filename
        path.write_text(content, encoding="utf-8")
        with pytest.raises(ValueError, match=pattern):
            get_text_task(name).load_file(path)


def test_empty_missing_and_unknown_files(tmp_path):
    task = get_text_task("gsm8k")
    with pytest.raises(ValueError, match=r"empty\.jsonl: the dataset is empty"):
        task.load_file(FIXTURES / "empty.jsonl")
    header_only = tmp_path / "header.csv"
    header_only.write_text("question,answer\n")
    with pytest.raises(ValueError, match=r"header\.csv: the dataset is empty"):
        task.load_file(header_only)
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        task.load_file(tmp_path / "nope.jsonl")
    other = tmp_path / "data.parquet"
    other.write_text("x")
    with pytest.raises(ValueError, match="unsupported file type"):
        task.load_file(other)


def test_examples_from_file_source_subsample_deterministically():
    task = get_text_task("countdown", source=str(FIXTURES / "countdown.jsonl"))
    assert len(task.examples()) == 3
    a, b = task.examples(n=2, seed=1), task.examples(n=2, seed=1)
    assert [e.id for e in a] == [e.id for e in b] and len(a) == 2
    with pytest.raises(ValueError, match="split"):
        task.examples(split="dev")


def test_examples_from_generators():
    sudoku = get_text_task("sudoku")
    assert sudoku.source == "generate"
    items = sudoku.examples("test", n=5, seed=2)
    assert len(items) == 5 and all(sg.grid_split(sg.from_string(e.answer)) == "test" for e in items)
    countdown = get_text_task("countdown", source="generate")
    items = countdown.examples("train", n=4, seed=0)
    assert [countdown.reward(f"<answer>{e.meta['solution']}</answer>", e) for e in items] == [1.0] * 4
    with pytest.raises(ValueError, match="number of examples"):
        sudoku.examples("train")
    with pytest.raises(ValueError, match="no offline generator"):
        get_text_task("math500", source="generate").examples("train", n=3)
    with pytest.raises(ValueError, match="no Hugging Face dataset"):
        get_text_task("sudoku", source="hub").examples("train", n=3)


def test_hub_loaders_with_a_fake_load_dataset(monkeypatch):
    calls = []

    def fake(path, name, split):
        calls.append((path, name, split))
        if path == "openai/gsm8k":
            return [{"question": "How many?", "answer": "3+4=7\n#### 7"}]
        if path == "HuggingFaceH4/MATH-500":
            return [{"problem": "p", "answer": "\\pi", "solution": "s", "subject": "Geometry", "level": 3}]
        if path == "Jiayi-Pan/Countdown-Tasks-3to4":
            rows = [{"nums": [a, b, c], "target": a + b + c} for a in range(1, 6) for b in range(1, 6) for c in (7, 8)]
            return [*rows, {"nums": [1, 2, 3, 4], "target": 10}]
        return []

    monkeypatch.setattr(files, "_load_dataset", fake)
    gsm = get_text_task("gsm8k").examples("test")
    assert calls[-1] == ("openai/gsm8k", "main", "test")
    assert gsm[0].answer == "7" and gsm[0].id == "openai/gsm8k[test]#0"
    math = get_text_task("math500").examples("test")
    assert math[0].answer == "\\pi" and math[0].meta["level"] == 3
    with pytest.raises(ValueError, match="only a 'test' split"):
        get_text_task("math500").examples("train")
    countdown = get_text_task("countdown")
    train, test = countdown.examples("train"), countdown.examples("test")
    assert calls[-1] == ("Jiayi-Pan/Countdown-Tasks-3to4", None, "train")
    assert len(train) + len(test) == 50  # the 4-number item is dropped
    assert all(len(e.meta["numbers"]) == 3 for e in train + test)
    assert not {e.answer + str(sorted(e.meta["numbers"])) for e in train} & {
        e.answer + str(sorted(e.meta["numbers"])) for e in test
    }
    monkeypatch.setattr(files, "_load_dataset", lambda path, name, split: [])
    with pytest.raises(ValueError, match=r"openai/gsm8k\[train\]: the dataset is empty"):
        get_text_task("gsm8k").examples("train")


def test_an_unreachable_hub_is_a_clear_error_naming_the_offline_sources(monkeypatch):
    def offline(path, name, split):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(files, "_load_dataset", offline)
    with pytest.raises(RunError, match=r"Jiayi-Pan/Countdown-Tasks-3to4 \[\w+\].*task_options.source=generate"):
        get_text_task("countdown").examples("test")


# ------------------------------------------------------------------------------------------------------ prompts


def test_prompt_styles():
    examples = {
        "countdown": get_text_task("countdown").load_file(FIXTURES / "countdown.jsonl")[0],
        "sudoku": get_text_task("sudoku").load_file(FIXTURES / "sudoku.jsonl")[0],
        "gsm8k": get_text_task("gsm8k").load_file(FIXTURES / "gsm8k.jsonl")[0],
        "math500": get_text_task("math500").load_file(FIXTURES / "math500.jsonl")[0],
    }
    for name, example in examples.items():
        task = get_text_task(name)
        reasoning = task.prompt(example)
        assert [m["role"] for m in reasoning] == ["user"]
        assert "<reasoning>" in reasoning[0]["content"] and "<answer>" in reasoning[0]["content"]
        chat = task.prompt(example, style="chat")
        assert [m["role"] for m in chat] == ["user"] and "<reasoning>" not in chat[0]["content"]
        assert chat == get_text_task(name, style="chat").prompt(example.to_meta())
        split = get_text_task(name, system_message=True).prompt(example)
        assert [m["role"] for m in split] == ["system", "user"]
        assert get_text_task(name, instructions="CUSTOM").prompt(example)[0]["content"].startswith("CUSTOM\n\n")
        with pytest.raises(ValueError, match="style"):
            task.prompt(example, style="fancy")
    countdown = get_text_task("countdown").prompt(examples["countdown"])[0]["content"]
    assert "[44, 19, 35]" in countdown and "98" in countdown
    sudoku = get_text_task("sudoku").prompt(examples["sudoku"])[0]["content"]
    assert sudoku.count("Solve the following Sudoku puzzle:") == 4  # 3 worked examples + the question
    assert sudoku.endswith(
        f"Question: Solve the following Sudoku puzzle: {examples['sudoku'].meta['puzzle']}\nAnswer:\n"
    )
    zero_shot = get_text_task("sudoku", few_shot=0).prompt(examples["sudoku"])[0]["content"]
    assert zero_shot.count("Solve the following Sudoku puzzle:") == 1
    assert examples["gsm8k"].question in get_text_task("gsm8k").prompt(examples["gsm8k"])[0]["content"]
    assert "\\boxed{}" in get_text_task("math500").prompt(examples["math500"], style="chat")[0]["content"]
    assert REASONING_PREFIX == "<reasoning>"


# ----------------------------------------------------------------------------------------------------- registry


def test_registry():
    assert set(TEXT_TASKS) == {"countdown", "sudoku", "gsm8k", "math500"}
    for name in TEXT_TASKS:
        task = get_text_task(name, style="chat")
        assert task.name == name and task.style == "chat"
        low, high = task.reward_range
        assert low == 0.0 and high in (1.0, 2.0)
    assert get_text_task("sudoku").reward_range == (0.0, 2.0)
    with pytest.raises(ValueError) as info:
        get_text_task("sudokuu")
    assert "'sudokuu'" in str(info.value) and all(name in str(info.value) for name in TEXT_TASKS)
    with pytest.raises(ValueError, match="style"):
        get_text_task("gsm8k", style="cot")
    assert set(STYLES) == {"reasoning", "chat"}


def test_example_meta_round_trip():
    example = TextExample("i", "q", "a", {"numbers": [1, 2], "target": 3})
    meta = example.to_meta()
    assert json.loads(json.dumps(meta)) == meta
    assert TextExample.from_meta(meta) == example
