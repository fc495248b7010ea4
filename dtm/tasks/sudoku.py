"""4x4 Sudoku over a tiny built-in vocabulary, for the built-in model (the token twin of the text Sudoku task).

Tokens. ``PAD=0, MASK=1, SEP=2, EOS=3`` and the digits ``0..4`` as ``DIGIT0 + d = 4 + d`` (``vocab_size = 9``);
digit 0 marks an empty cell and only appears in prompts.

* Prompt: the 16 puzzle cells row by row, then ``SEP`` (17 tokens, no padding).
* Response: the 16 solution cells, then ``EOS`` up to ``gen_length`` (default 16: no padding).

Puzzles come from :func:`dtm.tasks.sudoku_grids.generate_puzzles`: a unique solution each, ``min_empty``-``max_empty``
empty cells (default 6-10), deterministic in ``(split, seed)``, and train/test answer-disjoint (the 288 solution grids
are partitioned by a hash; a test solution never appears in a training prompt or demonstration).

Reward, in [0, 2] (the DTM paper's Sudoku reward, arXiv 2604.18739): ``2.0 * correct / empty``, the fraction of the
puzzle's empty cells whose response token is the solution digit (given cells and padding are not scored; any token
value, even outside the vocabulary, is simply wrong). ``is_correct``: all 16 cells equal the solution and the padding is
``EOS``.

Demonstrations (pretraining data of the base model, decent but imperfect): given cells copied; each empty cell, with
probability ``p_noise`` (default 0.3), replaced by a uniform digit 1-4 (right by chance with probability 1/4), else
the solution digit; ``EOS`` padding. An empty cell is thus wrong with probability ``0.75 * p_noise``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dtm.tasks.base import PromptBatch
from dtm.tasks.sudoku_grids import CELLS, generate_puzzles

PAD, MASK, SEP, EOS = 0, 1, 2, 3
DIGIT0 = 4
VOCAB_SIZE = DIGIT0 + 5
MAX_REWARD = 2.0


class SudokuTask:
    """4x4 Sudoku as a :class:`dtm.tasks.base.TokenTask` (module docstring: tokens, data, reward, demonstrations)."""

    name = "sudoku_digits"
    mask_token_id = MASK
    vocab_size = VOCAB_SIZE

    def __init__(self, gen_length: int = CELLS, p_noise: float = 0.3, min_empty: int = 6, max_empty: int = 10) -> None:
        if gen_length < CELLS:
            raise ValueError(f"gen_length {gen_length} is shorter than the {CELLS} cells of a grid")
        if not 0 <= p_noise <= 1:
            raise ValueError(f"p_noise must be in [0, 1], got {p_noise}")
        if not 1 <= min_empty <= max_empty <= CELLS - 4:
            raise ValueError(f"need 1 <= min_empty <= max_empty <= 12, got {min_empty}, {max_empty}")
        self.gen_length = gen_length
        self.p_noise = p_noise
        self.min_empty, self.max_empty = min_empty, max_empty

    def prompts(self, n: int, split: str = "train", seed: int = 0) -> PromptBatch:
        """``n`` puzzles of ``split``, deterministic in ``(split, seed)``; meta holds ``puzzle`` and ``solution``."""
        pairs = generate_puzzles(n, split, seed, self.min_empty, self.max_empty)
        puzzles = torch.tensor([p for p, _ in pairs], dtype=torch.long).reshape(n, CELLS)
        ids = torch.cat([puzzles + DIGIT0, torch.full((n, 1), SEP)], dim=1)
        meta = [{"puzzle": list(p), "solution": list(s)} for p, s in pairs]
        return PromptBatch(ids, torch.ones_like(ids), meta)

    def demonstrations(self, prompts: PromptBatch, generator: torch.Generator) -> torch.Tensor:
        """Noisy solutions (module docstring), ``[N, gen_length]``."""
        puzzle, solution = self._grids(prompts.meta)
        noisy = (torch.rand(solution.shape, generator=generator) < self.p_noise) & (puzzle == 0)
        random_digits = torch.randint(1, 5, solution.shape, generator=generator)
        cells = torch.where(noisy, random_digits, solution) + DIGIT0
        pad = torch.full((len(prompts), self.gen_length - CELLS), EOS)
        return torch.cat([cells, pad], dim=1)

    @staticmethod
    def _grids(meta: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        puzzle = torch.tensor([m["puzzle"] for m in meta], dtype=torch.long).reshape(len(meta), CELLS)
        solution = torch.tensor([m["solution"] for m in meta], dtype=torch.long).reshape(len(meta), CELLS)
        return puzzle, solution

    def cell_accuracy(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> torch.Tensor:
        """Fraction of each puzzle's empty cells answered correctly, ``[N]`` floats in [0, 1]."""
        puzzle, solution = self._grids(meta)
        empty = puzzle == 0
        right = (responses[:, :CELLS].long() == solution + DIGIT0) & empty
        return right.sum(1).float() / empty.sum(1).clamp(min=1).float()

    def score(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> torch.Tensor:
        """The evaluation metric (the paper's Sudoku accuracy): cell accuracy over the empty cells."""
        return self.cell_accuracy(responses, meta)

    def reward(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> torch.Tensor:
        """``2.0 * cell_accuracy``, ``[N]`` floats in [0, 2]."""
        return MAX_REWARD * self.cell_accuracy(responses, meta)

    def is_correct(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> torch.Tensor:
        _, solution = self._grids(meta)
        cells = (responses[:, :CELLS].long() == solution + DIGIT0).all(dim=1)
        return cells & (responses[:, CELLS:] == EOS).all(dim=1)

    def render(self, ids: Sequence[int]) -> str:
        """One character per token: digits, ``_`` PAD, ``?`` MASK, ``|`` SEP, ``.`` EOS, ``#`` anything else."""
        names = {PAD: "_", MASK: "?", SEP: "|", EOS: "."}
        return "".join(names.get(int(i), str(int(i) - DIGIT0) if DIGIT0 <= int(i) < VOCAB_SIZE else "#") for i in ids)
