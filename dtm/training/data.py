"""Token datasets of prompt/response pairs for masked-diffusion pretraining.

A dataset is a left-padded prompt tensor, its attention mask, and a response tensor of one fixed length (responses
are padded by the task, e.g. with EOS, as LLaDA does). It comes from a task's demonstrations or from a JSONL file
with one ``{"prompt": [ids], "response": [ids]}`` object per line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from dtm.tasks.base import TokenTask


@dataclass
class TokenDataset:
    prompts: torch.Tensor
    attention_mask: torch.Tensor
    responses: torch.Tensor

    def __len__(self) -> int:
        return self.prompts.shape[0]

    def __post_init__(self) -> None:
        if len(self) == 0:
            raise ValueError("the dataset is empty")

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prompts, attention mask and responses of the rows ``index``, without the leading columns that are padding
        in every one of these rows: prompts of mixed lengths are left-padded to the longest of the whole dataset, and
        a model would otherwise spend most of a batch of short prompts on padding (which changes nothing else)."""
        attention = self.attention_mask[index]
        start = int((attention.sum(0) == 0).cumprod(0).sum())  # leading all-padding columns
        return self.prompts[index, start:], attention[:, start:], self.responses[index]

    def save_jsonl(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for prompt, mask, response in zip(self.prompts, self.attention_mask, self.responses, strict=True):
                f.write(json.dumps({"prompt": prompt[mask.bool()].tolist(), "response": response.tolist()}) + "\n")


def from_task(task: TokenTask, size: int, seed: int) -> TokenDataset:
    """``size`` training prompts of ``task`` with one demonstration each, deterministic in ``seed``."""
    prompts = task.prompts(size, split="train", seed=seed)
    responses = task.demonstrations(prompts, torch.Generator().manual_seed(seed))
    return TokenDataset(prompts.ids, prompts.attention_mask, responses)


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad variable-length rows to one length; return ids and attention mask."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
    return ids, mask


def _token_list(value: object, key: str, where: str, vocab_size: int) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{where}: '{key}' must be a list of integer token ids")
    bad = [v for v in value if not 0 <= v < vocab_size]
    if bad:
        raise ValueError(f"{where}: '{key}' has token id {bad[0]} outside the vocabulary [0, {vocab_size})")
    return value


def load_jsonl(path: str | Path, vocab_size: int, pad_id: int = 0) -> TokenDataset:
    """Read a JSONL token dataset; every malformed line is reported with its file and line number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path}")
    prompts, responses = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg})") from None
            if not isinstance(record, dict) or not {"prompt", "response"} <= record.keys():
                raise ValueError(f"{where}: expected an object with 'prompt' and 'response' keys")
            prompts.append(_token_list(record["prompt"], "prompt", where, vocab_size))
            response = _token_list(record["response"], "response", where, vocab_size)
            if responses and len(response) != len(responses[0]):
                raise ValueError(
                    f"{where}: response has {len(response)} tokens, earlier lines have {len(responses[0])};"
                    " pad responses to one length"
                )
            responses.append(response)
    if not prompts:
        raise ValueError(f"{path}: the dataset is empty")
    ids, mask = left_pad(prompts, pad_id)
    return TokenDataset(ids, mask, torch.tensor(responses, dtype=torch.long))
