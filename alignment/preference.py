"""Preference pairs for aligning genrec's generative recommenders (DPO, OneRec's IPA).

Candidates come from each model's own catalog-constrained decoding, so every chosen and rejected item is a real
catalog item the model itself can generate:

* P5 / RecGPT / BIGRec: the top-``N`` items of ``recommend(histories, k=N)`` (one item per "session", ``m = 1``;
  BIGRec with its title-constrained beam search);
* OneRec: ``N`` distinct sessions of ``m`` items from ``generate_candidate_sessions`` (``m = 1``: ``recommend``).

Two ways to pick a pair per user (:func:`build_preference_dataset`):

* ``"ground_truth"``: chosen = the user's real next item, rejected = the model's highest-scoring candidate that is
  not it (the "hard negative" the model currently prefers);
* ``"reward"``: every candidate session is scored by a :class:`~genrec.alignment.reward.RewardModel`; chosen = the
  highest session reward, rejected = the lowest (OneRec's IPA; users whose ``N`` rewards all tie are skipped).

The result is a ``datasets.Dataset`` in TRL's preference format (``prompt``/``chosen``/``rejected`` strings,
rendered by :func:`render_preference_text`) plus structured columns (``history``, ``chosen_items``,
``rejected_items``, rewards) that genrec's DPO trainer reads for the non-text models.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Mapping, Sequence

import torch
from transformers.utils import logging

from genrec.utils.checks import check_int

logger = logging.get_logger(__name__)

__all__ = ["PREFERENCE_STRATEGIES", "build_preference_dataset", "generate_candidates", "render_preference_text"]

PREFERENCE_STRATEGIES = ("ground_truth", "reward")
# the model registry's kinds (genrec.models.registry.KINDS) that generate candidates: P5/OneRec, RecGPT, BIGRec
SUPPORTED_KINDS = ("seq2seq", "parallel-codes", "text-lm")


# ------------------------------------------------------------------------------------------------ model helpers
def _model_kind(model) -> str:
    """The registry kind of ``model``: ``"seq2seq"`` (P5, OneRec), ``"parallel-codes"`` (RecGPT) or ``"text-lm"``
    (BIGRec).

    Raises:
        ValueError: any other model.
    """
    from genrec.models.registry import MODEL_RECORDS, record_of

    try:
        kind = record_of(model).kind
    except ValueError:
        kind = None
    if kind not in SUPPORTED_KINDS:
        names = [record.name for record in MODEL_RECORDS if record.kind in SUPPORTED_KINDS]
        raise ValueError(f"`model` ({type(model).__name__}) must be one of the genrec models {names}")
    return kind


def _item_index(model) -> dict[str, int]:
    """The model's catalog id -> row map.

    Raises:
        ValueError: the model has no catalog bound.
    """
    index = getattr(model, "item_index", None)
    if not isinstance(index, Mapping) or not index:
        index = getattr(model, "_item_index", None)
    if not isinstance(index, Mapping) or not index:
        raise ValueError(f"{type(model).__name__} has no catalog bound; bind one (item tokenizer / set_catalog) first")
    return dict(index)


def _check_histories(histories: Sequence[Sequence[str]]) -> list[list[str]]:
    if isinstance(histories, str) or not isinstance(histories, Sequence):
        raise ValueError("`histories` must be a list of histories (lists of item ids)")
    out = []
    for number, history in enumerate(histories):
        if isinstance(history, str) or len(history) == 0:
            raise ValueError(f"`histories[{number}]` ({history!r}) must be a non-empty list of item ids")
        out.append([str(item) for item in history])
    return out


# ------------------------------------------------------------------------------------------------ candidates
def _scored_candidates(model, histories: list[list[str]], num_candidates: int, session_length: int,
                       batch_size: int) -> list[list[tuple[list[str], float]]]:
    """Per user, up to ``num_candidates`` distinct ``(session, score)`` best first (score = model log-prob)."""
    kind = _model_kind(model)
    if session_length > 1 and not hasattr(model, "generate_candidate_sessions"):
        raise ValueError(
            f"`session_length` ({session_length}) must be 1 for {type(model).__name__}: it generates one next item "
            "per decoding; only OneRec generates sessions of several items"
        )
    num_items = len(_item_index(model))
    results: list[list[tuple[list[str], float]]] = []
    for start in range(0, len(histories), batch_size):
        chunk = histories[start:start + batch_size]
        if session_length > 1:
            sessions = model.generate_candidate_sessions(chunk, num_sessions=num_candidates,
                                                         session_length=session_length)
            for user_sessions in sessions:
                results.append([([item for item, _ in session], float(sum(score for _, score in session)))
                                for session in user_sessions])
            continue
        k = min(num_candidates, num_items)
        # the model's own recommend() with the contract's defaults: history items are never candidates
        options = {"batch_size": batch_size}
        if kind == "text-lm":
            # the title-constrained beam search (the embedding grounding is not constrained decoding)
            options["method"] = "constrained"
        ranked = model.recommend(chunk, k=k, **options)
        for items in ranked:
            results.append([([item], float(score)) for item, score in items])
    cleaned = []
    for user in results:
        seen: set[tuple[str, ...]] = set()
        kept = []
        for session, score in user:
            # -inf: an item the model did not generate (e.g. a masked history item filling a short top-k)
            if session and score != float("-inf") and tuple(session) not in seen:
                seen.add(tuple(session))
                kept.append((session, score))
        cleaned.append(kept)
    return cleaned


def generate_candidates(model, histories: Sequence[Sequence[str]], *, num_candidates: int = 8,
                        session_length: int = 1, batch_size: int = 64) -> list[list[list[str]]]:
    """Candidate sessions per user from the model's own catalog-constrained decoding.

    Args:
        model: a bound P5, OneRec, RecGPT or BIGRec model.
        histories: per user, catalog item ids oldest first (at least one item each).
        num_candidates: sessions per user ``N`` (fewer only when the model finds fewer distinct ones).
        session_length: items per session ``m``; must be 1 except for OneRec.
        batch_size: users per decoding call.

    Returns:
        per user, up to ``N`` distinct sessions (lists of ``m`` distinct catalog item ids), best first by the
        model's own score. History items may appear unless the model excludes them itself.

    Raises:
        ValueError: an unsupported model, ``session_length > 1`` for a one-item model, bad sizes, or a history
            that is empty or holds an unknown item id.
    """
    check_int("num_candidates", num_candidates, 1)
    check_int("session_length", session_length, 1)
    check_int("batch_size", batch_size, 1)
    histories = _check_histories(histories)
    return [[session for session, _ in user]
            for user in _scored_candidates(model, histories, num_candidates, session_length, batch_size)]


# ------------------------------------------------------------------------------------------------ text
_RECGPT_TOKENS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _recgpt_item_strings(model) -> list[str]:
    """Per catalog row, the item's code-token string (``"<a_3><b_7>"``), from its item tokenizer when it has one."""
    cached = _RECGPT_TOKENS.get(model)
    if cached is not None and cached[0] is model.item_ids:  # set_catalog() binds a new list
        return cached[1]
    if model.item_tokenizer is not None and list(model.item_tokenizer.item_ids) == list(model.item_ids):
        hf_tokenizer = model.item_tokenizer.build_hf_tokenizer()
        table = model.item_tokenizer.item_token_ids(hf_tokenizer).tolist()  # (num_items, L), -1 padded
        strings = ["".join(hf_tokenizer.convert_ids_to_tokens([t for t in row if t >= 0])) for row in table]
    else:  # no tokenizer (or another catalog bound): the model's own codes, named like genrec's item tokens
        from genrec.tokenization.base import level_name

        codes = model.catalog_codes[1:].tolist()  # (num_items, C)
        strings = ["".join(f"<{level_name(level)}_{code}>" for level, code in enumerate(row)) for row in codes]
    _RECGPT_TOKENS[model] = (model.item_ids, strings)
    return strings


def render_preference_text(model, history: Sequence[str], items: Sequence[str]) -> tuple[str, str]:
    """The text form of one (history, session) for TRL's preference format.

    * P5 / OneRec: ``prompt`` = the encoder input decoded by the model's tokenizer (special tokens dropped),
      ``completion`` = the session's item code tokens decoded (exactly the decoder's target tokens);
    * BIGRec: ``prompt`` = its instruction prompt, ``completion`` = the quoted titles as BIGRec writes its response
      (several items joined by ``", "``);
    * RecGPT: ``prompt`` = the history's item-code strings (the last ``max_position_embeddings``), ``completion`` =
      the session's, space-separated.

    Args:
        model: a bound P5, OneRec, RecGPT or BIGRec model.
        history: catalog item ids, oldest first (non-empty).
        items: the session's catalog item ids (non-empty).

    Returns:
        ``(prompt, completion)``.

    Raises:
        ValueError: unsupported model, empty history/session, or an unknown item id.
    """
    return _render(model, _model_kind(model), _item_index(model), history, items)


def _render(model, kind: str, index: Mapping[str, int], history: Sequence[str], items: Sequence[str]
            ) -> tuple[str, str]:
    """:func:`render_preference_text` with the model kind and catalog index already looked up."""
    (history,) = _check_histories([history])
    if isinstance(items, str) or len(items) == 0:
        raise ValueError(f"`items` ({items!r}) must be a non-empty list of item ids")
    for where, values in (("history", history), ("items", items)):
        for item in values:
            if str(item) not in index:
                raise ValueError(f"`{where}` holds item id {item!r}, which is not in the model's catalog of "
                                 f"{len(index)} items")
    rows = [index[str(item)] for item in items]
    if kind == "seq2seq":
        tokenizer = model.tokenizer
        # item-level models write a history item as one id past the vocabulary: show its code tokens instead
        prompt_ids = model.expand_item_inputs(model.encode_history([index[item] for item in history]))
        prompt = tokenizer.decode(prompt_ids, skip_special_tokens=True)
        completion = tokenizer.decode([t for row in rows for t in model.item_tokens(row)])
        return prompt, completion
    if kind == "text-lm":
        from genrec.models.bigrec.prompts import format_response

        completion = ", ".join(format_response(model.item_titles[row], model.config.max_title_chars) for row in rows)
        return model.prompts([history])[0], completion
    strings = _recgpt_item_strings(model)
    recent = history[-model.config.max_position_embeddings:]
    return " ".join(strings[index[item]] for item in recent), " ".join(strings[row] for row in rows)


# ------------------------------------------------------------------------------------------------ dataset
def _examples_columns(examples, need_target: bool) -> tuple[list[str], list[list[str]], list[str | None]]:
    """``(user_ids, histories, targets)`` from a ``datasets.Dataset`` or a list of dicts."""
    import datasets

    if isinstance(examples, datasets.Dataset):
        columns = set(examples.column_names)
        required = {"user_id", "history"} | ({"target"} if need_target else set())
        if not required <= columns:
            raise ValueError(f"`examples` lacks column(s) {sorted(required - columns)}; it has {sorted(columns)}")
        users = [str(user) for user in examples["user_id"]]
        histories = [list(history) for history in examples["history"]]
        targets = list(examples["target"]) if "target" in columns else [None] * len(users)
        return users, histories, targets
    if isinstance(examples, (str, Mapping)) or not isinstance(examples, Sequence):
        raise ValueError("`examples` must be a datasets.Dataset or a list of dicts with user_id, history, target")
    users, histories, targets = [], [], []
    for number, example in enumerate(examples):
        if not isinstance(example, Mapping):
            raise ValueError(f"`examples[{number}]` must be a dict with user_id, history, target")
        for key in ("user_id", "history") + (("target",) if need_target else ()):
            if key not in example:
                raise ValueError(f"`examples[{number}]` has no {key!r}")
        users.append(str(example["user_id"]))
        histories.append(list(example["history"]))
        targets.append(example.get("target"))
    return users, histories, targets


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def _preference_features():
    from datasets import Features, List, Value

    strings = List(Value("string"))
    return Features({
        "user_id": Value("string"), "history": strings, "chosen_items": strings, "rejected_items": strings,
        "chosen_reward": Value("float64"), "rejected_reward": Value("float64"),
        "prompt": Value("string"), "chosen": Value("string"), "rejected": Value("string"),
    })


def build_preference_dataset(model, examples, *, strategy: str = "ground_truth", reward_model=None,
                             num_candidates: int = 8, session_length: int = 1, batch_size: int = 64,
                             seed: int = 0):
    """Build (chosen, rejected) pairs per user from the model's own candidates.

    Args:
        model: a bound P5, OneRec, RecGPT or BIGRec model.
        examples: ``datasets.Dataset`` or list of dicts with ``user_id`` (str), ``history`` (list[str]) and, for
            ``"ground_truth"``, ``target`` (str) -- e.g. ``split.valid`` or training windows.
        strategy: ``"ground_truth"`` (chosen = ``[target]``, rejected = the best candidate that is not the target;
            ``session_length`` must be 1) or ``"reward"`` (chosen / rejected = the candidate session with the
            highest / lowest ``reward_model.session_reward``; users whose rewards all tie are skipped).
        reward_model: a :class:`~genrec.alignment.reward.RewardModel` over the same item ids (required for
            ``"reward"``; with ``"ground_truth"`` it fills the reward columns).
        num_candidates: candidate sessions per user ``N``.
        session_length: items per session ``m`` (> 1 only for OneRec).
        batch_size: users per decoding / reward call.
        seed: seeds torch's RNG during generation (decoding is deterministic in evaluation mode; this pins any
            sampling a model may add).

    Returns:
        ``(dataset, stats)``. ``dataset`` columns: ``user_id``, ``history``, ``chosen_items``, ``rejected_items``,
        ``chosen_reward``, ``rejected_reward`` (NaN without a reward model), ``prompt``, ``chosen``, ``rejected``
        (see :func:`render_preference_text`). ``stats``: ``num_users``, ``num_pairs``, ``num_skipped``,
        ``reward_mean`` (over every generated candidate; NaN without a reward model), ``reward_chosen_mean``,
        ``reward_rejected_mean``, ``generate_seconds``, ``reward_seconds``, plus ``strategy``,
        ``num_candidates_mean`` (candidates found per user) and ``target_in_candidates`` (fraction of users whose
        target the model already generates; ``"ground_truth"`` only, else NaN).

    Raises:
        ValueError: bad strategy / sizes, a missing reward model, a target or candidate outside the reward model's
            catalog, or anything :func:`generate_candidates` rejects.
    """
    import datasets

    if strategy not in PREFERENCE_STRATEGIES:
        raise ValueError(f"`strategy` ({strategy!r}) must be one of {list(PREFERENCE_STRATEGIES)}")
    check_int("num_candidates", num_candidates, 1)
    check_int("session_length", session_length, 1)
    check_int("batch_size", batch_size, 1)
    check_int("seed", seed, 0)
    if strategy == "reward":
        if reward_model is None:
            raise ValueError("`strategy` 'reward' needs a `reward_model` (genrec.alignment.reward.RewardModel)")
        if num_candidates < 2:
            raise ValueError(f"`num_candidates` ({num_candidates}) must be >= 2 for strategy 'reward' "
                             "(chosen and rejected are two different candidates)")
    if strategy == "ground_truth" and session_length != 1:
        raise ValueError(f"`session_length` ({session_length}) must be 1 for strategy 'ground_truth': the chosen "
                         "session is the single next item")
    if reward_model is not None and not callable(getattr(reward_model, "session_reward", None)):
        raise ValueError(f"`reward_model` ({type(reward_model).__name__}) must have session_reward(histories, "
                         "sessions), e.g. genrec.alignment.reward.RewardModel")
    users, histories, targets = _examples_columns(examples, need_target=strategy == "ground_truth")
    histories = _check_histories(histories)
    kind, index = _model_kind(model), _item_index(model)
    if strategy == "ground_truth":
        for number, target in enumerate(targets):
            if target is None or str(target) not in index:
                raise ValueError(f"`examples[{number}]` target {target!r} is not in the model's catalog of "
                                 f"{len(index)} items")

    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        candidates = _scored_candidates(model, histories, num_candidates, session_length, batch_size)
    generate_seconds = time.perf_counter() - start

    # ----- rewards of every candidate (and of the ground-truth target) --------------------------------------------
    start = time.perf_counter()
    rewards: list[list[float]] | None = None
    target_rewards: list[float] | None = None
    if reward_model is not None:
        flat_histories = [history for history, user in zip(histories, candidates) for _ in user]
        flat_sessions = [session for user in candidates for session, _ in user]
        flat = []
        if flat_sessions:
            flat = reward_model.session_reward(flat_histories, flat_sessions, batch_size=max(batch_size, 256))
        rewards, position = [], 0
        for user in candidates:
            rewards.append(list(flat[position:position + len(user)]))
            position += len(user)
        if strategy == "ground_truth":
            target_rewards = reward_model.session_reward(histories, [[str(t)] for t in targets],
                                                         batch_size=max(batch_size, 256))
    reward_seconds = time.perf_counter() - start

    # ----- pairs -----------------------------------------------------------------------------------------------------
    nan = float("nan")
    rows: dict[str, list] = {name: [] for name in _preference_features()}
    skipped, target_found = 0, 0
    for number, (user, history, user_candidates) in enumerate(zip(users, histories, candidates)):
        if strategy == "ground_truth":
            chosen = [str(targets[number])]
            target_found += any(session == chosen for session, _ in user_candidates)
            others = [i for i, (session, _) in enumerate(user_candidates) if session != chosen]
            if not others:
                skipped += 1
                continue
            rejected_at = others[0]  # candidates are best first: the model's favourite wrong item
            chosen_reward = nan if target_rewards is None else float(target_rewards[number])
            rejected_reward = nan if rewards is None else float(rewards[number][rejected_at])
            rejected = user_candidates[rejected_at][0]
        else:
            user_rewards = rewards[number]
            if len(user_rewards) < 2 or max(user_rewards) == min(user_rewards):
                skipped += 1
                continue
            best = max(range(len(user_rewards)), key=user_rewards.__getitem__)
            worst = min(range(len(user_rewards)), key=user_rewards.__getitem__)
            chosen, rejected = user_candidates[best][0], user_candidates[worst][0]
            chosen_reward, rejected_reward = float(user_rewards[best]), float(user_rewards[worst])
        prompt, chosen_text = _render(model, kind, index, history, chosen)
        _, rejected_text = _render(model, kind, index, history, rejected)
        for name, value in (("user_id", user), ("history", history), ("chosen_items", list(chosen)),
                            ("rejected_items", list(rejected)), ("chosen_reward", chosen_reward),
                            ("rejected_reward", rejected_reward), ("prompt", prompt), ("chosen", chosen_text),
                            ("rejected", rejected_text)):
            rows[name].append(value)
    dataset = datasets.Dataset.from_dict(rows, features=_preference_features())

    all_rewards = [value for user in rewards for value in user] if rewards is not None else []
    stats = {
        "strategy": strategy,
        "num_users": len(users),
        "num_pairs": len(dataset),
        "num_skipped": skipped,
        "num_candidates_mean": _mean([len(user) for user in candidates]),
        "target_in_candidates": target_found / len(users) if strategy == "ground_truth" and users else nan,
        "reward_mean": _mean(all_rewards) if reward_model is not None else nan,
        "reward_chosen_mean": _mean([r for r in rows["chosen_reward"] if not math.isnan(r)]),
        "reward_rejected_mean": _mean([r for r in rows["rejected_reward"] if not math.isnan(r)]),
        "generate_seconds": round(generate_seconds, 4),
        "reward_seconds": round(reward_seconds, 4),
    }
    logger.info(f"preference pairs ({strategy}): {stats['num_pairs']} of {stats['num_users']} users, "
                f"{skipped} skipped")
    return dataset, stats
