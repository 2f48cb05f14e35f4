"""genrec: generative recommendation on the Hugging Face stack.

``import genrec`` makes every genrec ``model_type`` known to the transformers Auto classes (no
``trust_remote_code``)::

    import genrec
    from transformers import AutoModelForSeq2SeqLM
    model = AutoModelForSeq2SeqLM.from_pretrained("runs/onerec/checkpoint")   # a "genrec-onerec" folder

It registers every config with ``AutoConfig`` now, through transformers' public ``AutoConfig.register``
(:func:`genrec.models.registry.register_auto_classes` with ``models=False``, one call per record of the model
registry), which imports torch and transformers' config code but no genrec model and not transformers' modeling
stack. A record's model classes are registered (``AutoModel*.register``) when a config of that model is first built
(:class:`genrec.models.registry.AutoRegisteredConfigMixin`), which ``AutoModel*.from_pretrained`` /
``from_config`` always do before looking the class up. So ``from genrec.models.layers import SparseMoeBlock`` or
``genrec --help`` import no model; the README's Architecture section gives the measured cost.

It also sets ``OMP_WAIT_POLICY=PASSIVE`` when torch is not imported yet and the variable is unset (see below).
"""

from __future__ import annotations

import os
import sys

__version__ = "0.1.0"

# OpenMP's default wait policy lets idle torch threads spin; beside one other busy process on a 2-core machine that
# made beam search ~38x slower (229 -> 6 users/s, HF generate alike), PASSIVE keeps full speed and costs nothing
# on an idle machine. OpenMP reads the variable once, when torch loads it, so it is set here -- every genrec import
# runs this file, and the registration below loads torch -- only if torch is not loaded yet and the user has not
# chosen a policy. With torch imported first it is too late: genrec.utils.threads warns once on the hot paths (see
# the README, "Speed on a shared machine").
OPENMP_WAIT_POLICY_SET = "OMP_WAIT_POLICY" not in os.environ and "torch" not in sys.modules
if OPENMP_WAIT_POLICY_SET:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

from genrec.models.registry import register_auto_classes  # noqa: E402  (after the OpenMP policy)

register_auto_classes(models=False)  # configs now; each model's classes when its config is first built
