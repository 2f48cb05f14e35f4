"""Preference alignment for genrec's generative recommenders (``genrec.alignment``).

- :mod:`genrec.alignment.reward`: trains the reward model (:mod:`genrec.models.reward`, scoring (user history, item
  or session) for engagement) on the interactions with ``transformers.Trainer`` and reports a held-out validation
  AUC; it simulates users.
- :mod:`genrec.alignment.preference`: chosen/rejected pairs from a model's own constrained beam search, as
  ``datasets.Dataset`` objects in TRL's preference format.
- :mod:`genrec.alignment.dpo`: DPO for all four models, configured with ``trl.DPOConfig`` (TRL's ``DPOTrainer`` for
  BIGRec; ``GenRecDPOTrainer``, a ``transformers.Trainer`` owning the loss of :mod:`genrec.alignment.losses`, for
  P5 / OneRec / RecGPT).
- :mod:`genrec.alignment.ipa`: OneRec's iterative preference alignment loop (``genrec align``, ``scripts/align.py``).

Names are imported lazily (TRL is only loaded when DPO is used).
"""

from __future__ import annotations

from genrec.utils.lazy import lazy_exports

_EXPORTS = {
    "RewardModelConfig": "genrec.models.reward",
    "RewardModel": "genrec.models.reward",
    "train_reward_model": "genrec.alignment.reward",
    "generate_candidates": "genrec.alignment.preference",
    "build_preference_dataset": "genrec.alignment.preference",
    "render_preference_text": "genrec.alignment.preference",
    "GenRecDPOTrainer": "genrec.alignment.dpo",
    "build_dpo_trainer": "genrec.alignment.dpo",
    "AlignConfig": "genrec.alignment.ipa",
    "load_align_config": "genrec.alignment.ipa",
    "run_alignment": "genrec.alignment.ipa",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
