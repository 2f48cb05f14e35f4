"""genrec models: the registry (:mod:`genrec.models.registry`) and their config/model classes.

``import genrec`` (which every ``genrec.*`` import runs) registers every config of the registry with ``AutoConfig``
(and each model's classes with the Auto model classes when its config is first built, see
:class:`genrec.models.registry.AutoRegisteredConfigMixin`), so ``AutoConfig.from_pretrained`` and
``AutoModel.from_pretrained`` resolve our
``model_type`` values ("genrec-sasrec", "genrec-popularity", "genrec-textknn", ...); the encoder-decoder
recommenders ("genrec-p5", "genrec-onerec") also load with ``AutoModelForSeq2SeqLM``, RecGPT and BIGRec with
``AutoModelForCausalLM``.

The class names below are imported lazily from the registry's ``"module:Class"`` strings, so importing one
module of this package (``genrec.models.layers``) imports no model.
"""

from __future__ import annotations

from genrec.models.registry import MODEL_RECORDS, register_auto_classes
from genrec.utils.lazy import lazy_exports

_EXPORTS: dict[str, str] = {  # class name -> its module, from the registry's "module:Class" strings
    path.rpartition(":")[2]: path.partition(":")[0]
    for record in MODEL_RECORDS
    if not record.config_class.startswith("genrec.alignment.")  # the reward model: genrec.alignment.reward
    for path in (record.config_class, record.model_class)
}

__all__ = [*sorted(_EXPORTS), "register_auto_classes"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
