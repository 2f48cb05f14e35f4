"""`genrec tokenize`: fits on Beauty's training histories, prints stats, saves a loadable folder."""

import json

import numpy as np
import pytest

from genrec.cli import main
from genrec.cli.tokenize import parse_overrides
from genrec.tokenization import AutoItemTokenizer


@pytest.fixture
def tiny_dataset(tmp_path):
    """An S3-Rec style folder: 12 users over 20 items with titles and categories."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = [" ".join([str(u)] + [str(i) for i in rng.choice(np.arange(1, 21), 6, replace=False)]) for u in range(1, 13)]
    (folder / "sequential_data.txt").write_text("\n".join(lines) + "\n")
    meta = [{"item_id": i, "title": f"thing {i % 7}", "categories": ["Shop", f"c{i % 3}"]} for i in range(1, 21)]
    (folder / "item_meta.jsonl").write_text("\n".join(json.dumps(m) for m in meta) + "\n")
    return str(folder)


def test_tokenize_semantic_on_beauty(tmp_path, capsys):
    out = tmp_path / "semantic"
    assert main(["tokenize", "--dataset", "amazon-beauty", "--method", "semantic", "--output", str(out),
                 "--seed", "3", "--set", "leaf_base=32"]) == 0
    printed = capsys.readouterr().out
    assert "item tokenizer 'semantic' on amazon-beauty: 12,101 items" in printed
    for row in ("utilisation per level", "collision rate before", "collision rate after", "fit seconds"):
        assert row in printed
    tokenizer = AutoItemTokenizer.from_pretrained(out)
    assert tokenizer.config.seed == 3 and tokenizer.config.leaf_base == 32
    assert tokenizer.codebook_sizes[-2:] == [32, 32] and tokenizer.num_items == 12101


def test_tokenize_json_output_and_sequences_exclude_held_out_items(tmp_path, capsys):
    from genrec.data import leave_one_out, load_dataset

    out = tmp_path / "seq"
    assert main(["tokenize", "--dataset", "amazon-beauty", "--method", "sequential", "--output", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["collision_rate_after"] == 0.0 and stats["dataset"] == "amazon-beauty"
    tokenizer = AutoItemTokenizer.from_pretrained(out)
    data = load_dataset("amazon-beauty")
    split = leave_one_out(data)
    # numbering walks TRAINING histories: the first user's first training item is number 0
    first_user = next(iter(split.train_sequences))
    assert tokenizer.encode(split.train_sequences[first_user][0]) == [0, 0, 0, 0, 0]
    seen = {item for seq in split.train_sequences.values() for item in seq}
    numbers = {item: int("".join(map(str, tokenizer.encode(item)))) for item in data.item_ids}
    unseen = [item for item in data.item_ids if item not in seen]
    assert all(numbers[item] >= len(seen) for item in unseen)


def test_tokenize_embeddings_file(tmp_path, tiny_dataset, capsys):
    path = tmp_path / "emb.npy"
    np.save(path, np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32))
    out = tmp_path / "hyb"
    args = ["tokenize", "--dataset", tiny_dataset, "--method", "hybrid", "--output", str(out), "--embeddings",
            str(path), "--set", 'components=["semantic","random"]',
            "--set", 'component_configs=[{}, {"codebook_size": 2, "num_levels": 2, "allow_collisions": true}]']
    assert main(args) == 0
    assert AutoItemTokenizer.from_pretrained(out).stats["components"][1]["method"] == "random"
    np.save(path, np.zeros((10, 8), dtype=np.float32))
    assert main([*args[:6], str(tmp_path / "bad"), *args[7:]]) == 2
    assert r"`embeddings` must have shape (num_items=20, d), got (10, 8)" in capsys.readouterr().err
    path.write_bytes(b"not an array")
    assert main([*args[:6], str(tmp_path / "bad"), *args[7:]]) == 2
    assert "is not a readable .npy array" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "nope"], "unknown tokenizer `method` 'nope'"),
        (["--method", "random", "--set", "bogus=1"], r"unknown RandomTokenizerConfig field\(s\) \['bogus'\]"),
        (["--method", "random", "--set", "codebook_size=1"], r"`codebook_size` \(1\) must be >= 2"),
        (["--method", "random", "--set", "novalue"], "--set expects KEY=VALUE"),
        (["--method", "semantic", "--set", "category_depth=9"], r"`category_depth` \(9\) exceeds"),
        (["--method", "sequential", "--set", "num_levels=1"], r"`num_levels` \(1\) digits of `base` \(10\)"),
        (["--method", "random", "--embeddings", "/no/file.npy"], "does not exist"),
    ],
)
def test_tokenize_errors_are_one_line(tmp_path, tiny_dataset, capsys, extra, message):
    import re

    code = main(["tokenize", "--dataset", tiny_dataset, "--output", str(tmp_path / "x"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and re.search(message, err), err
    assert "Traceback" not in err and not (tmp_path / "x").exists()


def test_tokenize_refuses_to_overwrite(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    base = ["tokenize", "--dataset", tiny_dataset, "--method", "collaborative", "--output", str(out)]
    assert main(base) == 2
    assert "pass --overwrite" in capsys.readouterr().err and (out / "keep.txt").exists()
    assert main([*base, "--overwrite", "--set", "num_clusters=2", "--set", "leaf_size=4"]) == 0
    assert "collision rate after        0.0000" in capsys.readouterr().out
    assert not (out / "keep.txt").exists()
    tokenizer = AutoItemTokenizer.from_pretrained(out)
    assert tokenizer.method == "collaborative" and tokenizer.num_items == 20 and tokenizer.codebook_sizes[0] == 2


def test_parse_overrides():
    assert parse_overrides(["a=3", "b=true", "c=x y", 'd=["p", "q"]', "e="]) == {
        "a": 3, "b": True, "c": "x y", "d": ["p", "q"], "e": ""}
