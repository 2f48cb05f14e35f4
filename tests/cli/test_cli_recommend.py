"""``genrec recommend``: the same answer as ``model.recommend`` for saved checkpoints and run folders."""

import json

import pytest
import torch

from genrec.cli import main
from genrec.data import load_dataset


@pytest.fixture
def titled_dataset(toy_dataset, tmp_path):
    """The toy dataset plus item_meta.jsonl titles for items 1..24."""
    from pathlib import Path

    folder = Path(toy_dataset)
    lines = [json.dumps({"item_id": str(item), "title": f"Product {item}"}) for item in range(1, 25)]
    (folder / "item_meta.jsonl").write_text("\n".join(lines) + "\n")
    return str(folder)


def _sasrec_run(dataset, folder):
    """A run-folder layout (config.yaml naming the dataset + checkpoint/) around an untrained tiny SASRec."""
    from genrec.models.sasrec import SASRecModel

    data = load_dataset(dataset)
    torch.manual_seed(0)
    model = SASRecModel.from_dataset(data.catalog, None, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     max_position_embeddings=4)
    folder.mkdir()
    (folder / "config.yaml").write_text(f"data:\n  dataset: {dataset}\nmodel:\n  type: sasrec\n")
    model.save_pretrained(folder / "checkpoint")
    return model.eval()


def test_history_gives_the_python_answer_with_titles(titled_dataset, tmp_path, capsys):
    model = _sasrec_run(titled_dataset, tmp_path / "run")
    expected = model.recommend([["3", "4", "5"]], k=4)[0]
    assert main(["recommend", "--checkpoint", str(tmp_path / "run"), "--history", "3", "4", "5", "-k", "4",
                 "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["history"] == ["3", "4", "5"]
    assert [(row["item_id"], row["rank"]) for row in record["recommendations"]] == [
        (item, rank) for rank, (item, _) in enumerate(expected, 1)]
    assert [row["score"] for row in record["recommendations"]] == pytest.approx([s for _, s in expected], abs=1e-5)
    assert [row["title"] for row in record["recommendations"]] == [f"Product {item}" for item, _ in expected]
    # the table: a header, then rank, id, score, title per row
    assert main(["recommend", "--checkpoint", str(tmp_path / "run"), "--history", "3", "4", "5", "-k", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["rank", "item_id", "score", "title"]
    first = lines[1].split()
    assert first[:2] == ["1", expected[0][0]] and float(first[2]) == pytest.approx(expected[0][1], abs=1e-4)
    assert " ".join(first[3:]) == f"Product {expected[0][0]}"


def test_input_file_is_a_batch_and_include_history(toy_dataset, tmp_path, capsys):
    model = _sasrec_run(toy_dataset, tmp_path / "run")
    histories = [["1", "2"], ["7"], ["10", "11", "12", "13", "14", "15"]]
    (tmp_path / "histories.txt").write_text("1 2\n7\n10,11,12,13,14,15\n")
    for extra, exclude in (([], True), (["--include-history"], False)):
        expected = model.recommend(histories, k=24, exclude_history=exclude)
        assert main(["recommend", "--checkpoint", str(tmp_path / "run" / "checkpoint"), "--input",
                     str(tmp_path / "histories.txt"), "-k", "24", "--json", "--batch-size", "2", *extra]) == 0
        records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [record["history"] for record in records] == histories
        for record, pairs in zip(records, expected):
            assert [row["item_id"] for row in record["recommendations"]] == [item for item, _ in pairs]
            assert "title" not in record["recommendations"][0]  # no item text in this catalog: no title column
        assert [len(record["recommendations"]) for record in records] == (
            [22, 23, 18] if exclude else [24, 24, 24])


def test_unknown_ids_and_bad_input_are_one_line_and_exit_2(toy_dataset, tmp_path, capsys):
    _sasrec_run(toy_dataset, tmp_path / "run")
    capsys.readouterr()  # the save's progress bar
    run = str(tmp_path / "run")
    assert main(["recommend", "--checkpoint", run, "--history", "3", "nope", "999"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--history: item ids not in the checkpoint's catalog (24 items" in err and err.endswith("nope, 999")
    (tmp_path / "bad.txt").write_text("1 2\n3 x9\n")
    assert main(["recommend", "--checkpoint", run, "--input", str(tmp_path / "bad.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.txt' line 2: item ids not in the checkpoint's catalog" in err and err.endswith("x9")
    (tmp_path / "blank.txt").write_text("1 2\n\n3\n")
    assert main(["recommend", "--checkpoint", run, "--input", str(tmp_path / "blank.txt")]) == 2
    assert "blank.txt' line 2 is empty" in capsys.readouterr().err
    assert main(["recommend", "--checkpoint", run, "--history", "1", "-k", "25"]) == 2
    assert "at most the catalog size (24 items)" in capsys.readouterr().err
    assert main(["recommend", "--checkpoint", str(tmp_path / "missing"), "--history", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_generative_checkpoint_answers_like_python(toy_dataset, tmp_path, capsys):
    from genrec.models.p5 import P5ForConditionalGeneration
    from genrec.training import load_checkpoint

    data = load_dataset(toy_dataset)
    torch.manual_seed(0)
    model = P5ForConditionalGeneration.from_dataset(
        data.catalog, {"u": ["1", "2", "3"]}, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
        max_history_items=3, num_beams=6, item_tokenizer_method="random",
        item_tokenizer_config={"codebook_size": 4, "num_levels": 3})
    model.save_pretrained(tmp_path / "p5")
    loaded, _ = load_checkpoint(tmp_path / "p5")
    expected = loaded.recommend([["5", "6"]], k=5)[0]
    assert main(["recommend", "--checkpoint", str(tmp_path / "p5"), "--history", "5", "6", "-k", "5", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["recommendations"]
    assert [(row["item_id"], row["score"]) for row in rows] == [(item, pytest.approx(s, abs=1e-5)) for item, s in expected]
