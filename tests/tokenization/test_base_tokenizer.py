"""Base item tokenizer: config, collisions, encode/decode, HF vocabulary, save/load, registry, bad input."""

import json

import numpy as np
import pytest
import torch

from genrec.data import ItemCatalog
from genrec.tokenization import (
    SPECIAL_TOKENS,
    TOKENIZER_METHODS,
    AutoItemTokenizer,
    ItemTokenizer,
    get_tokenizer_class,
    level_name,
)
from genrec.tokenization.collisions import append_disambiguation_level, codes_are_unique, collision_stats
from genrec.tokenization.random_ids import RandomTokenizer, RandomTokenizerConfig
from genrec.tokenization.semantic import SemanticTokenizer
from genrec.tokenization.sequential import SequentialTokenizer


def _catalog(n=30):
    ids = [f"i{k}" for k in range(n)]
    records = [{"title": f"item number {k % 7}", "categories": ["Shop", f"c{k % 3}", f"d{k % 2}"]} for k in range(n)]
    return ItemCatalog(ids, records)


@pytest.fixture
def catalog():
    return _catalog()


@pytest.fixture
def colliding(catalog):
    # 30 items in 3 x 3 = 9 codes: guaranteed collisions, fixed by the appended level.
    return RandomTokenizer(codebook_size=3, num_levels=2, allow_collisions=True, seed=1).fit(catalog)


# ---------------------------------------------------------------------------------------- config


def test_config_round_trip_and_unknown_keys():
    config = RandomTokenizerConfig(codebook_size=16, num_levels=2, seed=3)
    data = config.to_dict()
    assert data == {"method": "", "seed": 3, "codebook_size": 16, "num_levels": 2, "allow_collisions": False}
    assert RandomTokenizerConfig.from_dict(json.loads(json.dumps(data))) == config
    with pytest.raises(ValueError, match=r"unknown RandomTokenizerConfig field\(s\) \['codebok_size'\]"):
        RandomTokenizerConfig.from_dict({"codebok_size": 4})


@pytest.mark.parametrize(
    "kwargs, field",
    [({"codebook_size": 1}, "codebook_size"), ({"num_levels": 0}, "num_levels"), ({"seed": -1}, "seed"),
     ({"codebook_size": 2.5}, "codebook_size"), ({"allow_collisions": "yes"}, "allow_collisions")],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        RandomTokenizer(**kwargs)


def test_constructor_sets_method_and_rejects_other_methods():
    assert RandomTokenizer().config.method == "random"
    assert RandomTokenizer({"codebook_size": 8}).config.codebook_size == 8
    with pytest.raises(ValueError, match="does not match"):
        RandomTokenizer(RandomTokenizerConfig(method="semantic"))
    with pytest.raises(ValueError, match="must be a RandomTokenizerConfig"):
        RandomTokenizer(object())


# ---------------------------------------------------------------------------------------- collisions


def test_append_disambiguation_level_ranks_in_catalog_order():
    codes = np.array([[3, 1], [0, 2], [3, 1], [3, 1], [0, 2]])
    new, size = append_disambiguation_level(codes)
    assert new[:, 2].tolist() == [0, 0, 1, 2, 1]
    assert size == 3 and codes_are_unique(new)
    stats = collision_stats(codes)
    assert stats["collision_rate"] == 1.0 and stats["max_group_size"] == 3 and stats["num_collision_groups"] == 2
    assert collision_stats(np.array([[1], [2], [2]]))["collision_rate"] == pytest.approx(2 / 3)


def test_fit_resolves_collisions_and_records_stats(colliding):
    stats = colliding.stats
    raw = colliding.codes[:, :2]
    assert stats["collision_rate_before"] == collision_stats(raw)["collision_rate"] > 0.5
    assert stats["collision_rate_after"] == 0.0 and stats["disambiguation_level_added"]
    assert colliding.code_length == 3 and codes_are_unique(colliding.codes)
    assert colliding.codebook_sizes[:2] == [3, 3]
    assert colliding.codebook_sizes[2] == stats["max_group_size"] == int(colliding.codes[:, 2].max()) + 1
    used = [len(np.unique(colliding.codes[:, level])) / size for level, size in enumerate(colliding.codebook_sizes)]
    assert stats["utilisation"] == pytest.approx(used)
    assert stats["fit_seconds"] >= 0 and stats["num_items"] == 30 and stats["vocab_size"] == 5 + sum(colliding.codebook_sizes)


# ---------------------------------------------------------------------------------------- encode / decode


def test_encode_decode_round_trip_and_bad_input(colliding, catalog):
    for item in catalog.item_ids:
        codes = colliding.encode(item)
        assert colliding.decode(codes) == item
        assert colliding.decode(np.array(codes)) == item and colliding.decode(torch.tensor(codes)) == item
        assert colliding.decode(codes + [-1, -1]) == item  # trailing padding ignored
    assert colliding.decode(colliding.encode("i0")[:2]) is None  # a prefix is not an item
    assert colliding.decode([99, 99, 99]) is None
    assert colliding.decode(colliding.encode("i0") + [0]) is None
    assert colliding.decode("i0") is None and colliding.decode([0.5, 1.0]) is None and colliding.decode([]) is None
    with pytest.raises(ValueError, match="unknown `item_id` 'nope'"):
        colliding.encode("nope")
    with pytest.raises(ValueError, match="item ids are strings"):
        SequentialTokenizer().fit(ItemCatalog(["1", "2"])).encode(1)


def test_unfitted_tokenizer_says_so():
    with pytest.raises(ValueError, match="not fitted"):
        RandomTokenizer().encode("a")
    with pytest.raises(ValueError, match="not fitted"):
        RandomTokenizer().save_pretrained("/tmp/never")


def test_fit_validates_inputs(catalog):
    with pytest.raises(ValueError, match="'ghost' that is not in the catalog"):
        RandomTokenizer().fit(catalog, sequences={"u": ["i1", "ghost"]})
    with pytest.raises(ValueError, match=r"shape \(num_items=30, d\)"):
        RandomTokenizer().fit(catalog, embeddings=np.zeros((29, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        RandomTokenizer().fit(catalog, embeddings=np.full((30, 4), np.nan))
    with pytest.raises(ValueError, match="has no items"):
        RandomTokenizer().fit(ItemCatalog([]))
    with pytest.raises(ValueError, match="must be an ItemCatalog"):
        RandomTokenizer().fit(["a", "b"])
    with pytest.raises(ValueError, match="needs `sequences`"):
        get_tokenizer_class("collaborative")().fit(catalog)


# ---------------------------------------------------------------------------------------- HF tokenizer


def test_level_names_beyond_26():
    assert [level_name(i) for i in (0, 1, 25, 26, 27, 51, 52, 701, 702)] == [
        "a", "b", "z", "aa", "ab", "az", "ba", "zz", "aaa"]


def test_hf_tokenizer_vocabulary_and_text(colliding, tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    hf = colliding.build_hf_tokenizer()
    assert isinstance(hf, PreTrainedTokenizerFast)
    assert len(hf) == colliding.vocab_size == 5 + sum(colliding.codebook_sizes)
    assert [hf.pad_token_id, hf.eos_token_id, hf.unk_token_id] == [0, 1, 2]
    assert hf.convert_ids_to_tokens([0, 1, 2, 3, 4]) == list(SPECIAL_TOKENS.values())
    # <a_1> = 5 + 1; <b_2> = 5 + 3 + 2; <c_0> = 5 + 6 + 0
    assert hf("<a_1><b_2><c_0>", add_special_tokens=False).input_ids == [6, 10, 11]
    assert hf("<a_1> <b_2>  <c_0></s>", add_special_tokens=False).input_ids == [6, 10, 11, 1]
    assert hf("<a_9>", add_special_tokens=False).input_ids == [hf.unk_token_id]
    assert hf.decode([6, 10, 11]) == "<a_1><b_2><c_0>"
    hf.save_pretrained(tmp_path / "hf")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert loaded("<a_1><b_2><c_0>", add_special_tokens=False).input_ids == [6, 10, 11]
    assert loaded.eos_token == "</s>" and loaded.pad_token_id == 0


def test_item_token_ids_map_back_to_items(colliding):
    hf = colliding.build_hf_tokenizer()
    table = colliding.item_token_ids(hf)
    assert table.dtype == torch.long and tuple(table.shape) == (30, 3)
    offsets = np.cumsum([5] + colliding.codebook_sizes[:-1])
    assert torch.equal(table, torch.from_numpy(colliding.codes + offsets[None, :]))
    for row, item in enumerate(colliding.item_ids):
        assert colliding.decode_token_ids(table[row]) == item
        assert colliding.decode_token_ids([0, *table[row].tolist(), 1, 0]) == item  # decoder start, eos, pad
        assert colliding.decode_token_ids(table[row], hf_tokenizer=hf) == item
        text = hf.decode(table[row])
        assert hf(text, add_special_tokens=False).input_ids == table[row].tolist()
    wrong_level = [table[0, 1].item(), table[0, 0].item(), table[0, 2].item()]
    assert colliding.decode_token_ids(wrong_level) is None
    assert colliding.decode_token_ids([table[0, 0].item(), 1, table[0, 1].item()]) is None  # eos inside
    assert colliding.decode_token_ids([10**6]) is None and colliding.decode_token_ids([]) is None


def test_item_token_ids_needs_the_item_tokens(colliding, catalog):
    other = RandomTokenizer(codebook_size=2, num_levels=5).fit(catalog).build_hf_tokenizer()
    with pytest.raises(ValueError, match="has no token '<a_2>'"):
        colliding.item_token_ids(other)


def test_many_levels_use_double_letter_tokens():
    tokenizer = SequentialTokenizer(base=2, num_levels=28).fit(ItemCatalog([str(i) for i in range(5)]))
    hf = tokenizer.build_hf_tokenizer()
    assert tokenizer.encode("4")[-3:] == [1, 0, 0]
    ids = tokenizer.item_token_ids(hf)[4]
    assert hf.convert_ids_to_tokens(ids[-3:].tolist()) == ["<z_1>", "<aa_0>", "<ab_0>"]
    assert tokenizer.decode_token_ids(ids) == "4"


# ---------------------------------------------------------------------------------------- save / load


def test_save_load_round_trip(colliding, tmp_path):
    path = colliding.save_pretrained(tmp_path / "tok")
    assert sorted(p.name for p in path.iterdir()) == ["codes.safetensors", "config.json"]
    loaded = AutoItemTokenizer.from_pretrained(path)
    assert type(loaded) is RandomTokenizer and loaded.config == colliding.config
    assert np.array_equal(loaded.codes, colliding.codes) and loaded.item_ids == colliding.item_ids
    assert loaded.stats == colliding.stats and loaded.codebook_sizes == colliding.codebook_sizes
    assert RandomTokenizer.from_pretrained(path).encode("i5") == colliding.encode("i5")
    assert ItemTokenizer.from_pretrained(path).decode(colliding.encode("i7")) == "i7"
    with pytest.raises(ValueError, match="holds a 'random' tokenizer, not 'semantic'"):
        SemanticTokenizer.from_pretrained(path)
    # overwrite in place works and leaves no temp folders behind
    colliding.save_pretrained(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]


def test_save_into_an_existing_folder_keeps_other_files(colliding, tmp_path):
    """Hugging Face convention: save_pretrained adds/replaces its own files and deletes nothing else."""
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "sub" / "notes.txt").write_text("keep me")
    (folder / "config.json").write_text("{}")  # ours: replaced
    colliding.save_pretrained(folder)
    assert (folder / "model.safetensors").read_bytes() == b"weights"
    assert (folder / "sub" / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in folder.iterdir()) == ["codes.safetensors", "config.json", "model.safetensors", "sub"]
    assert AutoItemTokenizer.from_pretrained(folder).item_ids == colliding.item_ids
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging folder left


def test_save_needs_existing_parent(colliding, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        colliding.save_pretrained(tmp_path / "missing" / "tok")


def _edit_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format_version": 99}, "`format_version` 99 is not supported"),
        ({"format": "other"}, "`format` is 'other'"),
        ({"item_ids": None}, "missing the field `item_ids`"),
        ({"codebook_sizes": None}, "missing the field `codebook_sizes`"),
        ({"codebook_sizes": [3, 3]}, "2 `codebook_sizes` for codes of length 3"),
        ({"method": "no-such-method"}, "unknown tokenizer `method` 'no-such-method'"),
        ({"config": {"codebook_size": 1}}, "`codebook_size` \\(1\\) must be >= 2"),
    ],
)
def test_load_rejects_bad_config(colliding, tmp_path, changes, message):
    path = colliding.save_pretrained(tmp_path / "tok")
    _edit_config(path, **changes)
    with pytest.raises(ValueError, match=message):
        AutoItemTokenizer.from_pretrained(path)


def test_load_rejects_missing_or_corrupted_files(colliding, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AutoItemTokenizer.from_pretrained(tmp_path / "nothing")
    path = colliding.save_pretrained(tmp_path / "tok")
    (path / "codes.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        AutoItemTokenizer.from_pretrained(path)
    (path / "codes.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="has no codes.safetensors"):
        AutoItemTokenizer.from_pretrained(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        AutoItemTokenizer.from_pretrained(path)
    (path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        AutoItemTokenizer.from_pretrained(path)


def test_load_rejects_codes_that_collide_or_mismatch(colliding, tmp_path):
    from safetensors.torch import save_file

    path = colliding.save_pretrained(tmp_path / "tok")
    codes = torch.from_numpy(np.array(colliding.codes))
    codes[1] = codes[0]
    save_file({"codes": codes}, str(path / "codes.safetensors"))
    with pytest.raises(ValueError, match="two items share a code"):
        AutoItemTokenizer.from_pretrained(path)
    save_file({"codes": codes[:5]}, str(path / "codes.safetensors"))
    with pytest.raises(ValueError, match=r"shape \(num_items=30"):
        AutoItemTokenizer.from_pretrained(path)


# ---------------------------------------------------------------------------------------- registry


def test_registry_lists_methods():
    for method in ("sequential", "sequential-shuffled", "collaborative", "semantic", "random", "title", "hybrid"):
        assert get_tokenizer_class(method).method == method
        assert TOKENIZER_METHODS[method] is get_tokenizer_class(method)
    with pytest.raises(ValueError, match=r"unknown tokenizer `method` 'rq'; allowed: \[.*'sequential'"):
        get_tokenizer_class("rq")
    assert isinstance(AutoItemTokenizer.for_method("random", codebook_size=4), RandomTokenizer)


def test_failed_fit_keeps_the_previous_state():
    tokenizer = SequentialTokenizer(num_levels=1).fit(ItemCatalog([str(i) for i in range(5)]))
    with pytest.raises(ValueError, match="number only 10 items but the catalog has 50"):
        tokenizer.fit(ItemCatalog([str(i) for i in range(50)]))
    assert tokenizer.num_items == 5 and tokenizer.decode(tokenizer.encode("3")) == "3"
    assert tokenizer.stats["num_items"] == 5
