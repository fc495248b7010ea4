"""A text task seen through a tokenizer: the token-level task interface the trainer, sampler and evaluator use.

Prompts are the task's chat messages rendered by the tokenizer's chat template (with the generation prompt), encoded
without extra special tokens (templates add their own BOS) and left-padded. Responses are decoded up to the first EOS
or end-of-turn token (a chat template may end turns with a token other than EOS) and scored by the text task's reward,
which never raises.

Prompts longer than ``max_prompt_length`` (0 = no limit) are an error naming the example, or, with
``truncation="left"``, lose their oldest tokens with one warning per batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch
from transformers import PreTrainedTokenizerBase

from dtm.tasks.base import PromptBatch
from dtm.tasks.text.base import TextTask

# End-of-turn tokens of common dLLM chat templates (LLaDA, Dream/Qwen), besides the tokenizer's EOS.
END_TOKENS = ("<|eot_id|>", "<|endoftext|>", "<|im_end|>")


def end_token_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Token ids that end a response: EOS and any known end-of-turn token the vocabulary has."""
    ids = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
    vocab = tokenizer.get_vocab()
    return ids | {vocab[t] for t in END_TOKENS if t in vocab}


class PromptTooLongError(ValueError):
    """A prompt exceeds ``max_prompt_length`` and truncation is off."""


class TokenizedTextTask:
    """Adapts a :class:`TextTask` and a tokenizer to the ``TokenTask`` protocol of :mod:`dtm.tasks.base`."""

    def __init__(
        self,
        task: TextTask,
        tokenizer: PreTrainedTokenizerBase,
        gen_length: int,
        mask_token_id: int,
        max_prompt_length: int = 0,
        truncation: Literal["error", "left"] = "error",
    ) -> None:
        if truncation not in ("error", "left"):
            raise ValueError(f"truncation must be 'error' or 'left', got {truncation!r}")
        self.text_task = task
        self.tokenizer = tokenizer
        self.name = task.name
        self.gen_length = gen_length
        self.mask_token_id = mask_token_id
        self.vocab_size = len(tokenizer)
        self.max_prompt_length = max_prompt_length
        self.truncation = truncation
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError("the tokenizer has neither a pad nor an EOS token; cannot left-pad prompts")
        self.pad_token_id = int(pad)
        eot = getattr(tokenizer, "eot_token_id", None)
        self.stop_ids = end_token_ids(tokenizer) | ({int(eot)} if eot is not None else set())

    # ---------------------------------------------------------------------------------------------------- prompts

    def prompt_text(self, meta: dict[str, Any]) -> str:
        """The rendered prompt string of one example (chat template with generation prompt)."""
        messages = self.text_task.prompt(meta)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return "\n\n".join(m["content"] for m in messages) + "\n\n"

    def encode(self, metas: Sequence[dict[str, Any]]) -> PromptBatch:
        """Tokenise and left-pad prompts for these examples (``TextExample.to_meta()`` dicts)."""
        rows, too_long = [], []
        for meta in metas:
            ids = self.tokenizer(self.prompt_text(meta), add_special_tokens=False)["input_ids"]
            if self.max_prompt_length and len(ids) > self.max_prompt_length:
                too_long.append((meta.get("id", "?"), len(ids)))
                ids = ids[-self.max_prompt_length :]
            rows.append(ids)
        if too_long:
            first_id, first_len = too_long[0]
            message = (
                f"{len(too_long)} of {len(metas)} {self.name} prompts are longer than max_prompt_length="
                f"{self.max_prompt_length} (e.g. example {first_id!r}: {first_len} tokens)"
            )
            if self.truncation == "error":
                raise PromptTooLongError(f"{message}; raise max_prompt_length or set prompt_truncation=left")
            warnings.warn(f"{message}; keeping their last {self.max_prompt_length} tokens", stacklevel=2)
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
        return PromptBatch(ids, mask, [dict(m) for m in metas])

    def prompts(self, n: int, split: str = "train", seed: int = 0) -> PromptBatch:
        examples = self.text_task.examples(split, n, seed)
        if not examples:
            raise ValueError(f"{self.name}: no {split} examples in source {self.text_task.source!r}")
        return self.encode([e.to_meta() for e in examples])

    # ------------------------------------------------------------------------------------------ demonstrations

    def response_text(self, meta: dict[str, Any]) -> str:
        """What follows the prompt when the task's demonstration is the assistant's turn: the chat template's rendering
        of the whole conversation minus the prompt's (so the template's end-of-turn marker is included); without a
        template, the demonstration and EOS."""
        demonstration = self.text_task.demonstration(meta)
        if not getattr(self.tokenizer, "chat_template", None):
            return demonstration + (self.tokenizer.eos_token or "")
        messages = [*self.text_task.prompt(meta), {"role": "assistant", "content": demonstration}]
        conversation = self.tokenizer.apply_chat_template(messages, tokenize=False)
        prompt = self.prompt_text(meta)
        if not conversation.startswith(prompt):
            raise ValueError(
                "the tokenizer's chat template renders the conversation with the answer differently from the prompt "
                f"with its generation prompt, so the answer cannot be cut out:\n{conversation!r}\nvs\n{prompt!r}"
            )
        return conversation[len(prompt) :]

    def response_ids(self, meta: dict[str, Any]) -> list[int]:
        """The tokens of :meth:`response_text`, encoded apart from the prompt as they are generated after it."""
        return self.tokenizer(self.response_text(meta), add_special_tokens=False)["input_ids"]

    def demonstrations(self, prompts: PromptBatch, generator: torch.Generator) -> torch.Tensor:
        """Reference responses ``[N, gen_length]`` of these prompts (:meth:`response_ids`), padded with EOS; one
        longer than ``gen_length`` is an error."""
        if self.tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token to pad responses with")
        rows = [self.response_ids(meta) for meta in prompts.meta]
        longest = max(len(row) for row in rows)
        if longest > self.gen_length:
            raise ValueError(f"a {self.name} demonstration has {longest} tokens, gen_length is {self.gen_length}")
        eos = int(self.tokenizer.eos_token_id)
        return torch.tensor([row + [eos] * (self.gen_length - len(row)) for row in rows], dtype=torch.long)

    # -------------------------------------------------------------------------------------------------- responses

    def decode(self, response: Sequence[int]) -> str:
        """Text of one response: tokens up to the first EOS or end-of-turn token, special tokens dropped."""
        ids = [int(t) for t in response]
        cut = next((i for i, t in enumerate(ids) if t in self.stop_ids), len(ids))
        return self.tokenizer.decode(ids[:cut], skip_special_tokens=True)

    def render(self, ids: Sequence[int]) -> str:
        return self.decode(ids)

    def texts(self, responses: torch.Tensor) -> list[str]:
        return [self.decode(row) for row in responses.tolist()]

    def reward(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> torch.Tensor:
        values = self.text_task.rewards(self.texts(responses), list(meta))
        return torch.tensor(values, dtype=torch.float32)

    def is_correct(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> torch.Tensor:
        texts = self.texts(responses)
        return torch.tensor([self.text_task.is_correct(t, m) for t, m in zip(texts, meta, strict=True)])

    def score(self, responses: torch.Tensor, meta: Sequence[dict[str, Any]]) -> torch.Tensor:
        """The text task's evaluation metric per response (accuracy; Sudoku: cell accuracy)."""
        texts = self.texts(responses)
        return torch.tensor([self.text_task.score(t, m) for t, m in zip(texts, meta, strict=True)])

    def extract_answer(self, text: str) -> str | None:
        return self.text_task.extract_answer(text)
