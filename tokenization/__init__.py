"""genrec.tokenization: item tokenizers (semantic ids) for generative recommendation.

Every scheme subclasses :class:`ItemTokenizer` and registers under a method name::

    from genrec.tokenization import get_tokenizer_class, AutoItemTokenizer
    tokenizer = get_tokenizer_class("collaborative")(num_clusters=8).fit(catalog, sequences=train_sequences)
    tokenizer.save_pretrained("out/tok");  AutoItemTokenizer.from_pretrained("out/tok")

``get_tokenizer_class`` imports every scheme module of this package on first use, so schemes added
as new files register themselves without being listed here.
"""

from genrec.tokenization.base import (
    SPECIAL_TOKENS,
    TOKENIZER_METHODS,
    AutoItemTokenizer,
    ItemTokenizer,
    get_tokenizer_class,
    level_name,
    register_tokenizer,
)
from genrec.tokenization.config import ItemTokenizerConfig

# Register every built-in scheme so TOKENIZER_METHODS is complete right after import.
from genrec.tokenization import (  # noqa: E402,F401  isort: skip
    sequential, random_ids, semantic, collaborative, title, hybrid, rq_kmeans, rqvae, fsq, pq,
)

__all__ = [
    "SPECIAL_TOKENS",
    "TOKENIZER_METHODS",
    "AutoItemTokenizer",
    "ItemTokenizer",
    "ItemTokenizerConfig",
    "get_tokenizer_class",
    "level_name",
    "register_tokenizer",
]
