"""genrec's engagement reward model (``genrec-reward``): P(engage | user history, item), session rewards.

Training lives in :mod:`genrec.alignment.reward` (``train_reward_model``); ``import genrec`` registers the config
and model with ``AutoConfig`` / ``AutoModel`` through the model registry, like every other genrec model.
"""

from __future__ import annotations

from genrec.utils.lazy import lazy_exports

_CONFIG, _MODELING = "genrec.models.reward.configuration_reward", "genrec.models.reward.modeling_reward"
__all__ = ["ITEM_IDS_FILE", "RewardModel", "RewardModelConfig", "RewardModelOutput"]
__getattr__, __dir__ = lazy_exports(__name__, {"RewardModelConfig": _CONFIG, "ITEM_IDS_FILE": _MODELING,
                                               "RewardModel": _MODELING, "RewardModelOutput": _MODELING})
