"""genrec models, registered with the transformers Auto classes (no ``trust_remote_code`` needed).

Importing ``genrec.models`` (or any ``genrec.models.*`` module) makes ``AutoConfig.from_pretrained``
and ``AutoModel.from_pretrained`` resolve our ``model_type`` values ("genrec-sasrec", ...).
"""

from transformers import AutoConfig, AutoModel

from genrec.models.sasrec import SASRecConfig, SASRecModel

__all__ = ["SASRecConfig", "SASRecModel", "register_auto_classes"]


def register_auto_classes() -> None:
    """Register every genrec config/model pair with the Auto classes (idempotent)."""
    for config_class, model_class in ((SASRecConfig, SASRecModel),):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)


register_auto_classes()
