"""genrec.training: run configs, collators, a full-ranking Trainer and the end-to-end training run.

    from genrec.training import load_run_config, run_training
    run = load_run_config("scripts/configs/sasrec-beauty.yaml", ["training.num_train_epochs=5"])
    metrics = run_training(run, "runs/sasrec", overwrite=False)
"""

from genrec.training.arguments import (
    DataArguments,
    GenRecTrainingArguments,
    RunConfig,
    apply_overrides,
    build_run_config,
    load_run_config,
)
from genrec.training.collators import NextItemCollator, NextItemDataset, left_pad
from genrec.training.pipeline import (
    evaluate_checkpoint,
    load_checkpoint,
    machine_info,
    prepare_output,
    run_training,
)
from genrec.training.trainer import (
    BestModelCallback,
    LogToFileCallback,
    RankingSet,
    RecommendationTrainer,
    TimeBudgetCallback,
    WallClockEvalCallback,
    full_ranking_metrics,
)

__all__ = [
    "BestModelCallback",
    "DataArguments",
    "GenRecTrainingArguments",
    "LogToFileCallback",
    "NextItemCollator",
    "NextItemDataset",
    "RankingSet",
    "RecommendationTrainer",
    "RunConfig",
    "TimeBudgetCallback",
    "WallClockEvalCallback",
    "apply_overrides",
    "build_run_config",
    "evaluate_checkpoint",
    "full_ranking_metrics",
    "left_pad",
    "load_checkpoint",
    "load_run_config",
    "machine_info",
    "prepare_output",
    "run_training",
]
