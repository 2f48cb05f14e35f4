"""genrec's engagement reward model (``genrec-reward``): P(engage | user history, item), session rewards.

Training lives in :mod:`genrec.alignment.reward` (``train_reward_model``); importing this package registers the
config and model with ``AutoConfig`` / ``AutoModel``.
"""

from genrec.models.reward.configuration_reward import RewardModelConfig
from genrec.models.reward.modeling_reward import ITEM_IDS_FILE, RewardModel, RewardModelOutput

__all__ = ["ITEM_IDS_FILE", "RewardModel", "RewardModelConfig", "RewardModelOutput"]
