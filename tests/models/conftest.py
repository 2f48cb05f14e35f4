from types import SimpleNamespace

import pytest

from genrec.tokenization import get_tokenizer_class
from tests.models.item_layout_helpers import NUM_ITEMS


@pytest.fixture(scope="module")
def item_tokenizer():
    """A random-code tokenizer (3 levels x 5 codes) over the item-layout suites' catalog ``i0 .. i29``."""
    catalog = SimpleNamespace(item_ids=[f"i{n}" for n in range(NUM_ITEMS)])
    return get_tokenizer_class("random")(codebook_size=5, num_levels=3, seed=0).fit(catalog)
