"""BIGRec step 2: ground generated text to catalog items (L2 distance, popularity and collaborative fusion).

``scores = -L2(generated, item) / (1 + pop)^gamma`` (BIGRec's popularity adjustment, ``pop`` = count / max count
in [0, 1]); with ``collaborative_weight = w > 0`` both score rows are standardised (zero mean, unit std per
user) and ``w * collaborative`` is added. Higher is better.

Worked example::

    >>> generated = torch.tensor([[0.0, 0.0]])
    >>> items = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    >>> grounding_scores(generated, items)
    tensor([[-5., -1.]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["grounding_scores", "llm_text_embeddings", "popularity_from_sequences"]


def popularity_from_sequences(sequences: Sequence[Sequence[str]], item_ids: Sequence[str]) -> torch.Tensor:
    """Training-interaction counts per catalog item, divided by the largest count: float ``(num_items,)`` in [0, 1]."""
    index = {item: row for row, item in enumerate(item_ids)}
    counts = torch.zeros(len(item_ids))
    for sequence in sequences:
        for item in sequence:
            if item in index:
                counts[index[item]] += 1
    return counts / counts.max().clamp(min=1)


def _standardise(scores: torch.Tensor) -> torch.Tensor:
    finite = torch.isfinite(scores)
    safe = torch.where(finite, scores, 0.0)
    count = finite.sum(-1, keepdim=True).clamp(min=1)
    mean = safe.sum(-1, keepdim=True) / count
    var = (torch.where(finite, scores - mean, 0.0) ** 2).sum(-1, keepdim=True) / count
    return torch.where(finite, (scores - mean) / var.sqrt().clamp(min=1e-8), scores)


def grounding_scores(
    generated: torch.Tensor,
    item_embeddings: torch.Tensor,
    *,
    popularity: torch.Tensor | None = None,
    gamma: float = 0.0,
    collaborative_scores: torch.Tensor | None = None,
    collaborative_weight: float = 0.0,
) -> torch.Tensor:
    """Score every catalog item for each generated text embedding (higher = better).

    Args:
        generated: ``(B, d)`` embeddings of the generated texts.
        item_embeddings: ``(N, d)`` embeddings of the catalog titles.
        popularity: ``(N,)`` in [0, 1]; required when ``gamma > 0``.
        gamma: popularity exponent (0 = pure distance, BIGRec's step 2).
        collaborative_scores: ``(B, N)`` scores of a collaborative model; required when ``collaborative_weight > 0``.
        collaborative_weight: weight of the standardised collaborative scores.

    Returns:
        float ``(B, N)``.

    Raises:
        ValueError: shape mismatches or a missing input for a non-zero weight.
    """
    if generated.dim() != 2 or item_embeddings.dim() != 2 or generated.shape[1] != item_embeddings.shape[1]:
        raise ValueError(
            f"`generated` {tuple(generated.shape)} and `item_embeddings` {tuple(item_embeddings.shape)} must be "
            "(B, d) and (N, d)"
        )
    distance = torch.cdist(generated.float(), item_embeddings.float())  # (B, N)
    if gamma:
        if popularity is None or popularity.shape != (item_embeddings.shape[0],):
            raise ValueError(f"`popularity` must be a ({item_embeddings.shape[0]},) tensor when gamma ({gamma}) > 0")
        distance = distance / (1.0 + popularity.float().to(distance.device)) ** gamma
    scores = -distance
    if collaborative_weight:
        if collaborative_scores is None or collaborative_scores.shape != scores.shape:
            raise ValueError(
                f"`collaborative_scores` must be {tuple(scores.shape)} when collaborative_weight "
                f"({collaborative_weight}) > 0, got {None if collaborative_scores is None else tuple(collaborative_scores.shape)}"
            )
        scores = _standardise(scores) + collaborative_weight * _standardise(collaborative_scores.float().to(scores.device))
    return scores


@torch.no_grad()
def llm_text_embeddings(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 32,
                        max_length: int = 64) -> torch.Tensor:
    """BIGRec's text embedding: the LLM's last-layer hidden state at the last token of each text.

    Args:
        model: a causal LM (``output_hidden_states`` supported), e.g. the LoRA-tuned model.
        tokenizer: its tokenizer. texts: strings to embed. batch_size: texts per forward.
        max_length: tokens kept per text (the first ones).

    Returns:
        float32 ``(len(texts), hidden)``.
    """
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        encoded = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_length] or [tokenizer.eos_token_id]
                   for t in texts[start:start + batch_size]]
        width = max(len(e) for e in encoded)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros(len(encoded), width, dtype=torch.long)
        for row, ids in enumerate(encoded):  # left padding: the last column is every text's last token
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            mask[row, width - len(ids):] = 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        hidden = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                       output_hidden_states=True).hidden_states[-1]
        out.append(hidden[:, -1].float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)
