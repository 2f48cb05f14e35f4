"""P5's personalized prompt templates for sequential and direct recommendation (Geng et al., RecSys 2022).

P5 phrases every task as text-to-text: the history (and, for direct recommendation, a candidate list) is
written into a natural-language prompt and the model answers with the item's id tokens. Training samples a
template per example (several paraphrases); evaluation uses template 0 of the task. User ids are left out on
purpose: the model must generalise to any history passed to ``recommend`` (and P5's consecutive user/item
numbering leaks the answer; see genrec.data's ``consecutive_id_rate``).

A template is a string with ``{history}`` (and ``{candidates}`` for direct recommendation); item lists are
written as item tokens separated by :data:`ITEM_SEPARATOR`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["DIRECT_TEMPLATES", "ITEM_SEPARATOR", "PROMPT_TEMPLATE_CHOICES", "SEQUENTIAL_TEMPLATES", "PromptBuilder",
           "check_prompt_templates", "template_texts"]

ITEM_SEPARATOR = ","
PROMPT_TEMPLATE_CHOICES = ("all", "first", "none")  # P5Config.prompt_templates


def check_prompt_templates(value: str) -> None:
    """Raise ``ValueError`` naming ``prompt_templates`` unless ``value`` is one of :data:`PROMPT_TEMPLATE_CHOICES`."""
    if value not in PROMPT_TEMPLATE_CHOICES:
        raise ValueError(f"`prompt_templates` ({value!r}) must be one of {PROMPT_TEMPLATE_CHOICES}")

SEQUENTIAL_TEMPLATES: tuple[str, ...] = (
    "Given the following purchase history of a user: {history} . What to recommend to the user next ?",
    "A user has bought the following items in order: {history} . Predict the next item the user will buy .",
    "Here is the purchase history of a user: {history} . What else do you think is necessary for the user ?",
    "According to the purchase history {history} , can you recommend the next possible item to the user ?",
    "The user has purchased {history} in this order . Which item will the user buy next ?",
    "Based on the items {history} that the user interacted with , generate the next item .",
)

DIRECT_TEMPLATES: tuple[str, ...] = (
    "A user has bought {history} . Pick the item the user will buy next from the candidates: {candidates} .",
    "Which of the candidates {candidates} should be recommended to the user who bought {history} ?",
    "Choose the best item from {candidates} for a user whose purchase history is {history} .",
)

_PLACEHOLDER = re.compile(r"\{(history|candidates)\}")


def template_texts() -> list[str]:
    """Every template's text with placeholders removed (the corpus for a from-scratch text tokenizer)."""
    return [_PLACEHOLDER.sub(" ", t) for t in SEQUENTIAL_TEMPLATES + DIRECT_TEMPLATES] + [ITEM_SEPARATOR]


def _split(template: str) -> list[str]:
    """``"a {history} b"`` -> ``["a ", "{history}", " b"]`` (placeholders kept as their own pieces)."""
    return [piece for piece in re.split(r"(\{history\}|\{candidates\})", template) if piece.strip() != ""]


@dataclass
class PromptBuilder:
    """Turns histories of catalog rows into prompt token ids without re-tokenizing text per example.

    Every template's text pieces are tokenized once; item lists are spliced in as token ids.

    Args:
        text_to_ids: tokenizes a text piece (no special tokens added).
        item_token_table: per catalog row, its token ids (list of lists).
        eos_token_id: appended to every prompt.
        max_history_items: the most recent items kept.
        num_candidates: candidates (target included) of a direct-recommendation training example.
        direct_task_ratio: share of training examples that are direct recommendation.
        item_input_offset: ``input_granularity="item"``: an item in the prompt is the ONE encoder id
            ``offset + row`` and items follow each other without separators (a position is an item already);
            ``None``: its code tokens, items separated by ``,``. Labels are code tokens either way.
        prompt_templates: which sequential-recommendation templates training samples from: ``"all"`` (P5's
            paraphrases), ``"first"`` (template 0 only, the one evaluation uses) or ``"none"`` (no words at all:
            the history's items then ``</s>``, for training and evaluation alike).

    Example:
        ``encode([3, 7])`` -> tokens of "Given the following purchase history of a user:" + item 3's tokens +
        "," + item 7's tokens + ". What to recommend to the user next ?" + ``</s>``.
    """

    text_to_ids: Callable[[str], list[int]] | None
    item_token_table: list[list[int]]
    eos_token_id: int
    max_history_items: int = 20
    num_candidates: int = 20
    direct_task_ratio: float = 0.0
    item_input_offset: int | None = None
    prompt_templates: str = "all"
    _pieces: dict[str, list] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_prompt_templates(self.prompt_templates)
        separator = self.text_to_ids(ITEM_SEPARATOR)
        self._separator = separator
        sequential = {"all": SEQUENTIAL_TEMPLATES, "first": SEQUENTIAL_TEMPLATES[:1], "none": ("{history}",)}
        for task, templates in (("sequential", sequential[self.prompt_templates]), ("direct", DIRECT_TEMPLATES)):
            self._pieces[task] = [
                [piece if piece.startswith("{") else self.text_to_ids(piece.strip()) for piece in _split(t)]
                for t in templates
            ]
        self.text_to_ids = None  # picklable from here on

    def _items(self, rows: Sequence[int]) -> list[int]:
        if self.item_input_offset is not None:
            return [self.item_input_offset + row for row in rows]
        tokens: list[int] = []
        for number, row in enumerate(rows):
            if number:
                tokens.extend(self._separator)
            tokens.extend(self.item_token_table[row])
        return tokens

    def render(self, task: str, template: int, history_rows: Sequence[int],
               candidates: Sequence[int] | None = None) -> list[int]:
        """Token ids of one prompt (``</s>`` appended)."""
        history_rows = list(history_rows)[-self.max_history_items:]
        tokens: list[int] = []
        for piece in self._pieces[task][template]:
            if piece == "{history}":
                tokens.extend(self._items(history_rows))
            elif piece == "{candidates}":
                tokens.extend(self._items(candidates or []))
            else:
                tokens.extend(piece)
        tokens.append(self.eos_token_id)
        return tokens

    def encode(self, history_rows: Sequence[int], candidates: Sequence[int] | None = None) -> list[int]:
        """Evaluation prompt: template 0 of sequential recommendation, or of direct with ``candidates``."""
        if candidates is not None:
            return self.render("direct", 0, history_rows, candidates)
        return self.render("sequential", 0, history_rows)

    def training_example(self, history_rows: Sequence[int], target_rows: Sequence[int],
                         rng: random.Random) -> dict[str, list[int]]:
        """A random template; the label is the first target item's tokens."""
        target = target_rows[0]
        labels = list(self.item_token_table[target])
        num_items = len(self.item_token_table)
        if self.direct_task_ratio > 0 and rng.random() < self.direct_task_ratio:
            seen = set(history_rows) | {target}
            negatives: set[int] = set()
            while len(negatives) < min(self.num_candidates - 1, num_items - len(seen)):
                row = rng.randrange(num_items)
                if row not in seen:
                    negatives.add(row)
            candidates = [target, *negatives]
            rng.shuffle(candidates)
            template = rng.randrange(len(DIRECT_TEMPLATES))
            return {"input_ids": self.render("direct", template, history_rows, candidates), "labels": labels}
        template = rng.randrange(len(self._pieces["sequential"]))
        return {"input_ids": self.render("sequential", template, history_rows), "labels": labels}
