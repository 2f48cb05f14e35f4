"""BIGRec step 1 data: instruction prompts (history titles → next item's title) and their collator.

Example:
    >>> build_prompt(["Lip balm", "Nail polish"])          # doctest: +ELLIPSIS
    'Below is an instruction ... ### Input:\\n"Lip balm", "Nail polish"\\n\\n### Response:\\n'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["PROMPT_TEMPLATE", "BIGRecCollator", "build_prompt", "clean_title", "encode_example", "format_response"]

# Alpaca-style instruction, as BIGRec's public code (plain text: works with any causal LM, chat-tuned or not).
PROMPT_TEMPLATE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\nGiven the items the user interacted with, in order, recommend the next item the user "
    "will interact with. Answer with the item's title.\n\n"
    "### Input:\n{history}\n\n### Response:\n"
)


def clean_title(title: str, max_chars: int = 120) -> str:
    """One-line title cut to ``max_chars`` characters (quotes normalised, since titles are quoted in prompts)."""
    return " ".join(str(title).replace('"', "'").split())[:max_chars].strip()


def build_prompt(history_titles: Sequence[str], *, max_items: int = 10, max_chars: int = 120) -> str:
    """The instruction prompt for a history (titles oldest first; the last ``max_items`` are kept).

    Raises:
        ValueError: an empty history.
    """
    if isinstance(history_titles, str) or len(history_titles) == 0:
        raise ValueError(f"`history_titles` ({history_titles!r}) must be a non-empty list of titles")
    recent = [clean_title(title, max_chars) for title in list(history_titles)[-max_items:]]
    return PROMPT_TEMPLATE.format(history=", ".join(f'"{title}"' for title in recent))


def format_response(title: str, max_chars: int = 120) -> str:
    """The target text: the quoted title (the eos token is appended by :func:`encode_example`)."""
    return f'"{clean_title(title, max_chars)}"'


def encode_example(tokenizer: Any, prompt: str, response: str, *, max_length: int = 512) -> dict[str, list[int]]:
    """Tokenize prompt + response + eos; ``labels`` are -100 on the prompt (loss on the response only).

    The prompt is cut from the left when the example is longer than ``max_length`` (the response is kept).

    Returns:
        ``{"input_ids": [...], "attention_mask": [...], "labels": [...]}``.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        response_ids = response_ids + [tokenizer.eos_token_id]
    response_ids = response_ids[:max_length]
    prompt_ids = prompt_ids[max(0, len(prompt_ids) + len(response_ids) - max_length):]
    input_ids = prompt_ids + response_ids
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids),
            "labels": [-100] * len(prompt_ids) + response_ids}


class BIGRecCollator:
    """Right-pad encoded examples into a batch; padded labels are -100.

    Args:
        pad_token_id: id used for padding ``input_ids``.

    Example:
        >>> BIGRecCollator(0)([{"input_ids": [5, 6], "attention_mask": [1, 1], "labels": [-100, 6]},
        ...                    {"input_ids": [7], "attention_mask": [1], "labels": [7]}])["labels"]
        tensor([[-100,    6],
                [   7, -100]])
    """

    def __init__(self, pad_token_id: int):
        if not isinstance(pad_token_id, int) or pad_token_id < 0:
            raise ValueError(f"`pad_token_id` ({pad_token_id!r}) must be a non-negative int")
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[Mapping[str, Sequence[int]]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        width = max(len(f["input_ids"]) for f in features)
        batch = {"input_ids": torch.full((len(features), width), self.pad_token_id, dtype=torch.long),
                 "attention_mask": torch.zeros(len(features), width, dtype=torch.long),
                 "labels": torch.full((len(features), width), -100, dtype=torch.long)}
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            batch["input_ids"][row, :n] = torch.tensor(feature["input_ids"])
            batch["attention_mask"][row, :n] = 1
            batch["labels"][row, :n] = torch.tensor(feature["labels"])
        return batch
