"""OneRec's iterative preference alignment (IPA), for any genrec generative model.

Each round (OneRec, Deng et al. 2025, sec. 3.4):

1. sample ``users_per_round`` training users; for a fraction ``dpo_fraction`` (r) of them the current model
   generates ``num_candidates`` (N) sessions of ``session_length`` (m) items with its own constrained decoding;
2. the reward model scores every session; chosen = the best, rejected = the worst
   (:func:`genrec.alignment.preference.build_preference_dataset`);
3. the model trains on ``sft_weight`` x next-token loss (every sampled user's real next items) +
   ``dpo_weight`` (λ) x DPO (the r users' pairs), against a frozen copy of itself
   (:func:`genrec.alignment.dpo.build_dpo_trainer`, configured by TRL's ``DPOConfig``; the reward model is
   trained once, data-parallel like the generator, by :func:`genrec.alignment.reward.train_reward_model`);
4. the aligned model is evaluated (validation N@10 over the full catalog, mean reward of its sessions for a
   fixed set of users), saved, and becomes the next round's policy *and* reference.

The run folder (every artifact written atomically; a killed run resumes at the first unfinished round)::

    OUTPUT/
      align_config.yaml      the config as given; a rerun with the same --output resumes (must match)
      base/                  the base generator's run folder, when the config trains it (base.config)
      reward_model/          the reward model (save_pretrained folder + reward_metrics.json with its valid AUC)
      round_0/metrics.json   the base model before alignment: valid N@10, reward_mean
      round_N/               checkpoint/ (the aligned model), metrics.json, log_history.json, pairs.jsonl
      metrics.json           every round's flat keys: "round_1/valid/ndcg@10", "round_1/reward_mean", ...
      align.log              the run's log

``scripts/align.py`` and ``genrec align`` call :func:`run_alignment`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from transformers.utils import logging

from genrec.utils.checks import is_int
from genrec.utils.io import (
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    check_output_parent,
)
from genrec.utils.runtime import finish_wandb, is_main_process

__all__ = ["ALIGN_CONFIG_FILE", "AlignConfig", "load_align_config", "run_alignment"]

logger = logging.get_logger(__name__)

ALIGN_CONFIG_FILE = "align_config.yaml"
_SECTIONS = ("base", "data", "reward", "alignment", "dpo")
_STRATEGIES = ("reward", "ground_truth")


@dataclass
class BaseArguments:
    """Where the generator comes from: a saved model (``checkpoint``) or a train preset trained first (``config``)."""

    checkpoint: str | None = None
    config: str | None = None
    overrides: list[str] = field(default_factory=list)


@dataclass
class DataArguments:
    dataset: str | None = None  # default: the base config's dataset, else amazon-beauty
    max_users: int | None = None  # default: the base config's max_users


@dataclass
class AlignmentArguments:
    """The IPA loop (names follow the OneRec paper: N candidates, sessions of m items, ratio r, weight λ)."""

    rounds: int = 2
    users_per_round: int = 512
    num_candidates: int = 8
    session_length: int = 1
    strategy: str = "reward"
    dpo_fraction: float = 1.0
    dpo_weight: float = 1.0
    sft_weight: float = 1.0
    eval_users: int | None = None  # a seeded random sample of validation users (None = all)
    reward_users: int = 256  # a seeded random sample of the evaluated users whose sessions the reward model scores
    generation_batch_size: int = 64
    eval_batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rounds", "users_per_round", "num_candidates", "session_length", "reward_users",
                     "generation_batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"`alignment.{name}` ({value!r}) must be an integer >= 1")
        if self.num_candidates < 2 and self.strategy == "reward":
            raise ValueError(f"`alignment.num_candidates` ({self.num_candidates}) must be >= 2 with strategy 'reward'")
        if self.strategy not in _STRATEGIES:
            raise ValueError(f"`alignment.strategy` ({self.strategy!r}) must be one of {list(_STRATEGIES)}")
        if self.strategy == "ground_truth" and self.session_length != 1:
            raise ValueError("`alignment.strategy` 'ground_truth' needs `alignment.session_length` 1 "
                             f"(got {self.session_length})")
        if not isinstance(self.dpo_fraction, (int, float)) or not 0.0 < float(self.dpo_fraction) <= 1.0:
            raise ValueError(f"`alignment.dpo_fraction` ({self.dpo_fraction!r}) must be in (0, 1]")
        for name in ("dpo_weight", "sft_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`alignment.{name}` ({value!r}) must be a number >= 0")
        if self.eval_users is not None and (not is_int(self.eval_users)
                                            or self.eval_users < 1):
            raise ValueError(f"`alignment.eval_users` ({self.eval_users!r}) must be null or an integer >= 1")


@dataclass
class AlignConfig:
    """A parsed alignment config (YAML sections base / data / reward / alignment / dpo)."""

    base: BaseArguments
    data: DataArguments
    reward: dict[str, Any]
    alignment: AlignmentArguments
    dpo: dict[str, Any]
    raw: dict[str, Any]
    source: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.raw)


def _section(raw: dict, name: str, allowed: list[str] | None) -> dict:
    values = raw.get(name) or {}
    if not isinstance(values, dict):
        raise ValueError(f"config section {name!r} must be a mapping, got {values!r}")
    if allowed is not None:
        bad = sorted(set(values) - set(allowed))
        if bad:
            raise ValueError(f"unknown `{name}` key(s) {bad}; allowed: {sorted(allowed)}")
    return dict(values)


def build_align_config(values: dict[str, Any], *, source: Path | None = None) -> AlignConfig:
    """Validate a raw alignment config.

    Raises:
        ValueError: an unknown section or key, or an invalid value (the message names it).
    """
    if not isinstance(values, dict):
        raise ValueError(f"an alignment config must be a mapping with sections {list(_SECTIONS)}")
    unknown = sorted(set(values) - set(_SECTIONS))
    if unknown:
        raise ValueError(f"unknown config section(s) {unknown}; allowed: {sorted(_SECTIONS)}")
    base = BaseArguments(**_section(values, "base", [f.name for f in fields(BaseArguments)]))
    if (base.checkpoint is None) == (base.config is None):
        raise ValueError("set exactly one of `base.checkpoint` (a saved genrec model) and `base.config` "
                         "(a train preset trained first)")
    data = DataArguments(**_section(values, "data", [f.name for f in fields(DataArguments)]))
    alignment = AlignmentArguments(**_section(values, "alignment", [f.name for f in fields(AlignmentArguments)]))
    reward = _section(values, "reward", None)
    dpo = _section(values, "dpo", None)
    from trl import DPOConfig

    dpo_fields = {f.name for f in fields(DPOConfig) if f.init}
    bad = sorted(set(dpo) - dpo_fields)
    if bad:
        raise ValueError(f"unknown `dpo` key(s) {bad}; allowed: any trl.DPOConfig field (e.g. beta, loss_type, "
                         "learning_rate, num_train_epochs, per_device_train_batch_size)")
    for key in ("output_dir", "loss_weights"):
        if key in dpo:
            raise ValueError(f"`dpo.{key}` is set by the alignment loop (use --output / `alignment.dpo_weight`)")
    return AlignConfig(base=base, data=data, reward=reward, alignment=alignment, dpo=dpo,
                       raw=copy.deepcopy(values), source=source)


def load_align_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> AlignConfig:
    """Read an alignment YAML, apply ``section.key=value`` overrides and validate it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: malformed YAML or invalid values.
    """
    from genrec.training.arguments import apply_overrides, read_yaml_config

    path = Path(path)
    values = apply_overrides(read_yaml_config(path), overrides, sections=_SECTIONS)
    return build_align_config(values, source=path)


# ---------------------------------------------------------------------------------------------- helpers
def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _resolve_path(name: str, config: AlignConfig) -> Path:
    """A path from the config: as given (relative to the working folder), else beside the config file."""
    path = Path(name)
    if path.exists() or path.is_absolute() or config.source is None:
        return path
    sibling = config.source.parent / path
    return sibling if sibling.exists() else path


def _resolve_checkpoint(name: str, config: AlignConfig, key: str) -> Path:
    """A checkpoint from the config: a local path (see :func:`_resolve_path`), else a Hub repo id
    ``owner/name[@revision]`` downloaded by :func:`genrec.utils.hub.resolve_folder` (one line when it cannot be)."""
    from genrec.utils.hub import resolve_folder

    path = _resolve_path(name, config)
    return path if path.exists() else resolve_folder(name, what=f"`{key}`")


def _load_model(path: Path):
    from transformers import AutoModel

    from genrec.training.pipeline import resolve_checkpoint

    return AutoModel.from_pretrained(resolve_checkpoint(path))


def _session_length_supported(model, session_length: int) -> None:
    if session_length > 1 and not hasattr(model, "generate_candidate_sessions"):
        raise ValueError(f"`alignment.session_length` ({session_length}) > 1 needs a session model (OneRec); "
                         f"{type(model).__name__} generates one item per slot: use session_length 1")


def _round_examples(train_sequences: dict[str, list[str]], users: list[str], session_length: int,
                    max_history: int) -> list[dict[str, Any]]:
    """Each user's last training items as the target session; the items before them as the history."""
    examples = []
    for user in users:
        sequence = train_sequences[user]
        cut = max(1, len(sequence) - session_length)
        examples.append({"user_id": user, "history": sequence[max(0, cut - max_history):cut],
                         "target": sequence[cut], "target_items": sequence[cut:cut + session_length]})
    return examples


def _valid_metrics(model, valid, item_index, *, ks=(5, 10), batch_size: int) -> dict[str, float]:
    from genrec.training.trainer import RankingSet, full_ranking_metrics

    max_length = getattr(model.config, "max_position_embeddings", None) or model.config.max_history_items
    ranking = RankingSet.from_split(valid, item_index, max_length=max_length)
    values = full_ranking_metrics(model, ranking, ks=ks, batch_size=batch_size)
    return {f"valid/{key}": float(value) for key, value in values.items() if key.split("@")[0] in ("recall", "ndcg")}


def _reward_mean(model, reward_model, histories, *, session_length: int, batch_size: int) -> float:
    """Mean reward of the model's own best session (one per user) — the simulated users' engagement."""
    from genrec.alignment.preference import generate_candidates

    sessions = generate_candidates(model, histories, num_candidates=1, session_length=session_length,
                                   batch_size=batch_size)
    rewards = reward_model.session_reward(histories, [per_user[0] for per_user in sessions])
    return float(sum(rewards) / len(rewards))


def _dpo_summary(log_history: list[dict]) -> dict[str, float]:
    """Mean over the round's training log records of the DPO metrics (and the MoE aux loss)."""
    keys = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
            "logps/chosen", "logps/rejected", "aux_loss", "ntp_loss")
    summary = {}
    for key in keys:
        values = [record[key] for record in log_history if key in record and isinstance(record[key], (int, float))]
        if values:
            summary[f"dpo/{key}"] = float(sum(values) / len(values))
    return summary


def _remove_scratch(output: Path) -> None:
    """Delete the hidden scratch folders a killed run leaves behind (never a finished round or artifact)."""
    import shutil

    for pattern in (".round_*.trainer*", ".round_*.tmp", ".round_*.old", ".reward_model.*.tmp", ".base.*.tmp"):
        for leftover in output.glob(pattern):
            if leftover.is_dir():
                logger.info(f"removing {leftover.name}, left by an interrupted run")
                shutil.rmtree(leftover, ignore_errors=True)


def _without_rounds(values: dict) -> dict:
    values = copy.deepcopy(values)
    (values.get("alignment") or {}).pop("rounds", None)
    return values


def _check_resume(output: Path, config: AlignConfig, overwrite: bool) -> bool:
    """True when ``output`` holds an earlier run of the same config (resume; ``alignment.rounds`` may differ, so
    a finished run can be extended by more rounds); raise on a conflict."""
    if not output.exists() or not any(output.iterdir()):
        return False
    saved = output / ALIGN_CONFIG_FILE
    if saved.is_file():
        previous = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
        if _without_rounds(previous) == _without_rounds(config.to_dict()):
            return True
        if not overwrite:
            changed = sorted(section for section in set(previous) | set(config.raw)
                             if previous.get(section) != config.raw.get(section))
            raise FileExistsError(f"output folder {str(output)!r} holds an alignment run with a different config "
                                  f"(sections {changed} differ); use another --output or pass --overwrite")
    elif not overwrite:
        raise FileExistsError(f"output folder {str(output)!r} exists and is not an alignment run folder; "
                              "choose another --output or pass --overwrite")
    import shutil

    if is_main_process():
        shutil.rmtree(output)
    _barrier()
    return False


# ---------------------------------------------------------------------------------------------- the loop
def run_alignment(config: AlignConfig, output: str | os.PathLike, *, overwrite: bool = False) -> dict[str, Any]:
    """Run (or resume) the IPA loop; see the module docstring for the folder layout.

    Args:
        config: :func:`load_align_config`'s result.
        output: the run folder (its parent must exist). A folder holding an earlier run of the same config
            is resumed after its last finished round.
        overwrite: replace a folder holding something else.

    Returns:
        the flat metrics written to ``OUTPUT/metrics.json``.
    """
    import torch
    from transformers import set_seed
    from trl import DPOConfig

    from genrec.alignment.dpo import build_dpo_trainer
    from genrec.alignment.preference import build_preference_dataset
    from genrec.alignment.reward import train_reward_model
    from genrec.data import leave_one_out, load_dataset
    from genrec.models.reward import RewardModel
    from genrec.training.pipeline import machine_info

    output = check_output_parent(output)
    resumed = _check_resume(output, config, overwrite)
    main = is_main_process()
    if main:
        output.mkdir(exist_ok=True)
        _remove_scratch(output)  # left by a killed run: trainer scratch and unfinished round staging folders
        atomic_write_text(output / ALIGN_CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False))
    _barrier()
    report_to = config.dpo.get("report_to", "none")
    report_to = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if "wandb" in report_to:
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(output))
    metrics_path = output / "metrics.json"
    metrics: dict[str, Any] = json.loads(metrics_path.read_text()) if resumed and metrics_path.is_file() else {}

    from genrec.training.pipeline import log_to_file

    with log_to_file(output / "align.log") if main else contextlib.nullcontext():
        logger.info(f"alignment config: {config.to_dict()} (resumed: {resumed})")
        args = config.alignment

        # ---- the base generator
        base_run = None
        if config.base.config is not None:
            from genrec.training.arguments import load_run_config
            from genrec.training.pipeline import run_training

            base_run = load_run_config(_resolve_path(config.base.config, config), config.base.overrides)
            base_dir = output / "base"
            _barrier()  # every process checks the folder before process 0 can write it
            if not (base_dir / "checkpoint" / "config.json").is_file():
                logger.info(f"training the base model into {base_dir}")
                start = time.time()
                base_metrics = run_training(base_run, base_dir, overwrite=True)
                metrics["base/train_seconds"] = round(time.time() - start, 3)
                metrics.update({f"base/{k}": v for k, v in base_metrics.items()
                                if k.startswith(("valid/", "test/")) and "@" in k})
            _barrier()
            base_path = base_dir
        else:
            base_path = _resolve_checkpoint(config.base.checkpoint, config, "base.checkpoint")
            if (base_path / "config.yaml").is_file():  # a run folder: its data section is the base's data
                from genrec.training.arguments import load_run_config

                base_run = load_run_config(base_path / "config.yaml")
        dataset = config.data.dataset or (base_run.data.dataset if base_run is not None else "amazon-beauty")
        max_users = config.data.max_users if config.data.max_users is not None else (
            base_run.data.max_users if base_run is not None else None)
        # the base's table columns, k-core filter and duplicate handling when it is the base's dataset (its catalog)
        load_options = base_run.data.load_options() if base_run is not None and dataset == base_run.data.dataset \
            else {}

        data = load_dataset(dataset, **load_options)
        split = leave_one_out(data)
        users = [user for user in data.user_ids if len(split.train_sequences.get(user, ())) >= 2]
        if max_users is not None:
            keep = set(data.user_ids[:max_users])
            users = [user for user in users if user in keep]
            valid = split.valid.filter(lambda row: row["user_id"] in keep)
        else:
            valid = split.valid
        # fixed seeded samples of validation users: the same users are measured before and after every round
        sampler = random.Random(args.seed)
        if args.eval_users is not None and args.eval_users < len(valid):
            valid = valid.select(sorted(sampler.sample(range(len(valid)), args.eval_users)))
        valid_histories = valid.to_dict()["history"]
        picked = sorted(sampler.sample(range(len(valid_histories)), min(args.reward_users, len(valid_histories))))
        reward_histories = [list(valid_histories[i]) for i in picked]

        # ---- the reward model
        reward_dir = output / "reward_model"
        reward_kwargs = dict(config.reward)
        reward_checkpoint = reward_kwargs.pop("checkpoint", None)
        _barrier()  # every process checks the folder before process 0 can write it
        if reward_checkpoint is not None or (reward_dir / "config.json").is_file():
            folder = (_resolve_checkpoint(reward_checkpoint, config, "reward.checkpoint") if reward_checkpoint is not None
                      else reward_dir)
            reward_model = RewardModel.from_pretrained(folder)
            saved = folder / "reward_metrics.json"
            if saved.is_file():
                metrics.update({f"reward_model/{k}": v for k, v in json.loads(saved.read_text()).items()
                                if isinstance(v, (int, float, str))})
        else:
            logger.info("training the reward model")
            reward_model, reward_metrics = train_reward_model(split, max_users=max_users, seed=args.seed,
                                                              output_dir=reward_dir if main else None,
                                                              **reward_kwargs)
            metrics.update({f"reward_model/{k}": v for k, v in reward_metrics.items()
                            if isinstance(v, (int, float, str))})
        _barrier()
        reward_model.eval()

        # ---- round 0: the base model before alignment
        done = [n for n in range(args.rounds + 1) if (output / f"round_{n}" / "metrics.json").is_file()]
        last = max(done) if done else -1
        policy_path = base_path if last <= 0 else output / f"round_{last}"
        model = _load_model(policy_path)
        _session_length_supported(model, args.session_length)
        if last < 0:
            start = time.time()
            round_metrics = _valid_metrics(model, valid, data.item_index, batch_size=args.eval_batch_size)
            round_metrics["reward_mean"] = _reward_mean(model, reward_model, reward_histories,
                                                        session_length=args.session_length,
                                                        batch_size=args.generation_batch_size)
            round_metrics["seconds/eval"] = round(time.time() - start, 3)
            _finish_round(output, 0, round_metrics, metrics, None, main, report_to)
            last = 0

        # ---- rounds
        max_history = int(getattr(model.config, "max_history_items", 50) or 50)
        for round_number in range(last + 1, args.rounds + 1):
            round_start = time.time()
            seed = args.seed + round_number
            rng = random.Random(seed)
            chosen_users = rng.sample(users, min(args.users_per_round, len(users)))
            examples = _round_examples(split.train_sequences, chosen_users, args.session_length, max_history)
            num_pairs_wanted = max(1, round(args.dpo_fraction * len(examples)))
            pair_examples = examples[:num_pairs_wanted]
            start = time.time()
            pairs, pair_stats = build_preference_dataset(
                model, pair_examples, strategy=args.strategy,
                reward_model=reward_model if args.strategy == "reward" else None,
                num_candidates=args.num_candidates, session_length=args.session_length,
                batch_size=args.generation_batch_size, seed=seed)
            generate_seconds = time.time() - start
            rows = _training_rows(examples, pairs)
            batch_size = int(config.dpo.get("per_device_train_batch_size", 8))
            world_size = int(os.environ.get("WORLD_SIZE", "1"))
            rows, dropped = _arrange_rows(rows, batch_size, world_size, random.Random(seed))
            from datasets import Dataset

            train_dataset = Dataset.from_list(rows)
            set_seed(seed)
            dpo_values = {"report_to": "none", "use_cpu": not torch.cuda.is_available(), "bf16": False,
                          "logging_steps": 1, "save_strategy": "no", "seed": seed, **config.dpo,
                          "train_sampling_strategy": "sequential"}  # the rows are already arranged in batches
            with _staging_dir(output / f".round_{round_number}.trainer") as trainer_dir:
                loss_types = dpo_values.get("loss_type", "sigmoid")
                count = len(loss_types) if isinstance(loss_types, (list, tuple)) else 1
                dpo_args = DPOConfig(output_dir=str(trainer_dir), loss_weights=[float(args.dpo_weight)] * count,
                                     **dpo_values)
                trainer = build_dpo_trainer(model, train_dataset, dpo_args, sft_weight=float(args.sft_weight))
                start = time.time()
                trainer.train()
                train_seconds = time.time() - start
                log_history = list(trainer.state.log_history)
            model = _trained_model(trainer, model)
            start = time.time()
            round_metrics = _valid_metrics(model, valid, data.item_index, batch_size=args.eval_batch_size)
            round_metrics["reward_mean"] = _reward_mean(model, reward_model, reward_histories,
                                                        session_length=args.session_length,
                                                        batch_size=args.generation_batch_size)
            eval_seconds = time.time() - start
            round_metrics.update(_dpo_summary(log_history))
            round_metrics.update({
                "pairs": int(pair_stats.get("num_pairs", len(pairs))),
                "pairs_skipped": int(pair_stats.get("num_skipped", 0)),
                "ntp_examples": len(rows),
                "rows_dropped": dropped,
                "candidates/reward_mean": float(pair_stats.get("reward_mean", math.nan)),
                "candidates/reward_chosen_mean": float(pair_stats.get("reward_chosen_mean", math.nan)),
                "candidates/reward_rejected_mean": float(pair_stats.get("reward_rejected_mean", math.nan)),
                "seconds/generate": round(generate_seconds, 3),
                "seconds/train": round(train_seconds, 3),
                "seconds/eval": round(eval_seconds, 3),
                "seconds/total": round(time.time() - round_start, 3),
            })
            from genrec.models.model_card import set_card_info

            set_card_info(model, dataset=data.name, metrics=round_metrics, data={"num_items": data.num_items},
                          written_by=f"genrec align (round {round_number} of {args.rounds})",
                          notes=[f"preference alignment round {round_number}: NTP + DPO against the reward model "
                                 f"(`{output.name}/reward_model/`)",
                                 f"metrics: validation over {len(valid):,} sampled users; reward_mean: the reward "
                                 f"model's mean reward of the model's own top session for {len(reward_histories):,} "
                                 "of them"])
            _finish_round(output, round_number, round_metrics, metrics, (model, log_history, pairs), main, report_to)

        metrics.update(machine_info())
        if main:
            atomic_write_json(metrics_path, metrics)
        finish_wandb()
    return metrics


def _training_rows(examples: list[dict], pairs) -> list[dict[str, Any]]:
    """One row per sampled user: its real next items (NTP) and, for the paired fraction, chosen/rejected."""
    by_user = {}
    for row in pairs.to_list() if hasattr(pairs, "to_list") else list(pairs):
        by_user[row["user_id"]] = row
    rows = []
    for example in examples:
        pair = by_user.get(example["user_id"])
        rows.append({
            "user_id": example["user_id"],
            "history": list(example["history"]),
            "target_items": list(example["target_items"]),
            "chosen_items": list(pair["chosen_items"]) if pair else [],
            "rejected_items": list(pair["rejected_items"]) if pair else [],
            "chosen_reward": float(pair["chosen_reward"]) if pair else math.nan,
            "rejected_reward": float(pair["rejected_reward"]) if pair else math.nan,
            "prompt": pair["prompt"] if pair else "",
            "chosen": pair["chosen"] if pair else "",
            "rejected": pair["rejected"] if pair else "",
        })
    return rows


def _arrange_rows(rows: list[dict], batch_size: int, world_size: int, rng: random.Random
                  ) -> tuple[list[dict], int]:
    """Order the round's rows so that every per-device batch holds the same number of preference pairs.

    Each block of ``batch_size`` rows takes ``p`` pair rows and ``batch_size - p`` next-token-only rows (``p`` in
    proportion to the pairs), blocks are shuffled in place and their count is a multiple of ``world_size``: under
    DDP every process then sees equally shaped pair and next-token sub-batches (TRL gathers per-row metrics
    across processes). Rows that do not fill a block are dropped (their count is returned).

    Raises:
        ValueError: fewer rows than one block per process.
    """
    pairs = [row for row in rows if row["chosen_items"]]
    plain = [row for row in rows if not row["chosen_items"]]
    rng.shuffle(pairs)
    rng.shuffle(plain)
    p = round(batch_size * len(pairs) / max(1, len(rows)))
    p = min(batch_size, max(p, 1 if pairs else 0))
    q = batch_size - p
    blocks = min(len(pairs) // p if p else len(rows), len(plain) // q if q else len(rows))
    blocks -= blocks % world_size
    if blocks == 0:
        raise ValueError(f"`alignment.users_per_round` gives {len(rows)} training rows ({len(pairs)} with a pair): "
                         f"fewer than one batch of `dpo.per_device_train_batch_size` ({batch_size}) per process "
                         f"({world_size}); raise users_per_round or lower the batch size")
    arranged = []
    for block in range(blocks):
        arranged.extend(pairs[block * p:(block + 1) * p])
        arranged.extend(plain[block * q:(block + 1) * q])
    return arranged, len(rows) - len(arranged)


@contextlib.contextmanager
def _staging_dir(path: Path):
    """A scratch folder for the Trainer (it writes nothing we keep), removed afterwards."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=path.name, dir=path.parent)) if is_main_process() else path
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _trained_model(trainer, model):
    """The trained genrec model: the trainer updates the weights in place (a BIGRec keeps its trained LM, an
    accelerate/DDP wrapper only wraps the same module), so this checks that and returns ``model``."""
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    if unwrapped is not model and unwrapped is not getattr(model, "lm", None) and not hasattr(model, "lm"):
        raise RuntimeError(f"the DPO trainer trained a different module ({type(unwrapped).__name__}) than the "
                           f"genrec model ({type(model).__name__})")
    return model


def _finish_round(output: Path, number: int, round_metrics: dict[str, Any], metrics: dict[str, Any],
                  artifacts, main: bool, report_to: list[str]) -> None:
    """Write ``round_N/`` atomically (checkpoint, metrics, log history, pairs) and update ``metrics.json``."""
    flat = {f"round_{number}/{key}": value for key, value in round_metrics.items()}
    metrics.update(flat)
    logger.info(f"round {number}: {round_metrics}")
    if main:
        with atomic_directory(output / f"round_{number}") as staging:
            if artifacts is not None:
                model, log_history, pairs = artifacts
                with atomic_directory(staging / "checkpoint") as checkpoint:
                    model.save_pretrained(checkpoint)
                atomic_write_json(staging / "log_history.json", log_history)
                lines = [json.dumps({k: row[k] for k in ("user_id", "history", "chosen_items", "rejected_items",
                                                         "chosen_reward", "rejected_reward")})
                         for row in (pairs.to_list() if hasattr(pairs, "to_list") else pairs)]
                atomic_write_text(staging / "pairs.jsonl", "\n".join(lines) + ("\n" if lines else ""))
            atomic_write_json(staging / "metrics.json", round_metrics)
        atomic_write_json(output / "metrics.json", metrics)
        if "wandb" in report_to:
            _wandb_log(output, number, round_metrics)
    _barrier()


def _wandb_log(output: Path, number: int, round_metrics: dict[str, Any]) -> None:
    import wandb

    if wandb.run is None:
        wandb.init(project=os.environ.get("WANDB_PROJECT", "genrec"), name=f"align-{output.name}",
                   dir=str(output), config={"output": str(output)})
        wandb.define_metric("round")
        wandb.define_metric("align/*", step_metric="round")  # per-round reward and N@10 charted against the round
    wandb.log({"round": number, **{f"align/{k}": v for k, v in round_metrics.items()
                                   if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))}})


def config_summary(config: AlignConfig) -> dict[str, Any]:
    """The loop's settings as a flat dict (for printing)."""
    return {**asdict(config.alignment), "base": config.base.checkpoint or config.base.config}
