"""genrec.evaluation: full-ranking Recall/HR, NDCG and MRR for score matrices and generated rankings."""

from genrec.evaluation.metrics import (
    DEFAULT_KS,
    MetricAccumulator,
    evaluate_rankings,
    evaluate_scores,
    history_mask,
    metrics_from_ranks,
    summarize,
    target_ranks,
)

__all__ = [
    "DEFAULT_KS",
    "MetricAccumulator",
    "evaluate_rankings",
    "evaluate_scores",
    "history_mask",
    "metrics_from_ranks",
    "summarize",
    "target_ranks",
]
