"""ItemCatalog: ids, fields, text rendering, empty-text errors; the bundled Beauty catalog."""

import pytest

from genrec.data import ItemCatalog


def _catalog():
    return ItemCatalog(
        ["10", "20", "30"],
        [
            {"title": "Red &amp; Gold Lipstick", "brand": "X", "categories": ["Beauty", "Makeup", "Lips"],
             "price": 3.5},
            {"title": "", "brand": "Y", "categories": ["Beauty", "Hair"]},
            {"title": None, "brand": "", "categories": []},
        ],
        name="toy",
    )


def test_ids_index_and_membership():
    catalog = _catalog()
    assert catalog.item_ids == ["10", "20", "30"]
    assert len(catalog) == 3 and "20" in catalog and "40" not in catalog and 10 not in catalog
    assert catalog.index("30") == 2
    assert catalog.indices(["30", "10"]) == [2, 0]
    assert catalog.item_id(1) == "20"
    with pytest.raises(ValueError, match="unknown item id '40'"):
        catalog.index("40")
    with pytest.raises(ValueError, match="unknown item id 10"):
        catalog.index(10)  # ints are not ids: ids are strings as in the source


def test_text_rendering_and_fallback():
    catalog = _catalog()
    assert catalog.text("10") == "Title: Red & Gold Lipstick; Brand: X; Categories: Beauty > Makeup > Lips"
    assert catalog.fields("10")["title"] == "Red &amp; Gold Lipstick"  # stored as published
    assert catalog.title("10") == "Red & Gold Lipstick"
    # Empty title: falls back to the other fields.
    assert catalog.title("20") == ""
    assert catalog.text("20") == "Brand: Y; Categories: Beauty > Hair"
    assert catalog.text("10", fields=["price", "title"]) == "Price: 3.5; Title: Red & Gold Lipstick"
    assert catalog.categories("10") == ["Beauty", "Makeup", "Lips"]
    assert catalog.categories("30") == []
    assert catalog.text("30") == ""


def test_texts_raises_on_empty_text_naming_items():
    catalog = _catalog()
    with pytest.raises(ValueError, match=r"1 of 3 items have empty text.*'30'"):
        catalog.texts()
    assert catalog.texts(allow_empty=True)[2] == ""
    with pytest.raises(ValueError, match="2 of 3 items"):
        catalog.require_text(fields=["title"])
    assert catalog.has_text
    no_text = ItemCatalog(["1", "2"], None, name="sports")
    assert not no_text.has_text
    with pytest.raises(ValueError, match="catalog 'sports': all items have empty text"):
        no_text.texts()


def test_constructor_validation_and_yelp_name():
    with pytest.raises(ValueError, match="unique"):
        ItemCatalog(["1", "1"])
    with pytest.raises(ValueError, match="strings"):
        ItemCatalog([1, 2])
    with pytest.raises(ValueError, match="aligned"):
        ItemCatalog(["1", "2"], [{}])
    with pytest.raises(ValueError, match="not in `item_ids`"):
        ItemCatalog(["1"], {"2": {"title": "x"}})
    yelp = ItemCatalog(["1"], {"1": {"name": "The Great Greek", "categories": ["Diners", "Greek"]}},
                       category_separator=", ")
    assert yelp.title("1") == "The Great Greek"
    assert yelp.text("1") == "Title: The Great Greek; Categories: Diners, Greek"
    sub = _catalog().subset(["30", "10"])
    assert sub.item_ids == ["30", "10"] and sub.title("10") == "Red & Gold Lipstick"


def test_beauty_catalog(beauty):
    catalog = beauty.catalog
    assert catalog.item_ids == [str(i) for i in range(1, 12102)]
    assert beauty.item_index["12101"] == 12100
    assert catalog.title("1") == "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce"
    assert catalog.fields("1")["brand"] == "OPI"
    assert catalog.categories("1") == ["Beauty", "Makeup", "Nails", "Nail Polish"]
    empty_titles = [i for i in catalog.item_ids if not catalog.title(i)]
    assert len(empty_titles) == 7  # documented in the data README
    texts = catalog.texts()  # every item still has text thanks to brand/categories
    assert len(texts) == 12101 and all(texts)
    assert texts[catalog.index(empty_titles[0])].startswith(("Brand:", "Categories:"))
    with pytest.raises(ValueError, match="7 of 12101 items have empty text"):
        catalog.texts(fields=["title"])
