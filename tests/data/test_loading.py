"""load_dataset: bundled Beauty, folder detection, every reader, k-core, and clear errors on bad input.

MovieLens is never committed: the tests write tiny synthetic files in its format to tmp_path.
"""

import gzip
import json
import re

import pandas as pd
import pytest

from genrec.data import (
    InteractionData,
    ItemCatalog,
    bundled_datasets,
    detect_format,
    kcore_filter,
    load_dataset,
)


def test_bundled_beauty_counts(beauty):
    assert "amazon-beauty" in bundled_datasets()
    assert (beauty.num_users, beauty.num_items, beauty.num_interactions) == (22363, 12101, 198502)
    assert beauty.user_ids[:3] == ["1", "2", "3"] and beauty.user_ids[-1] == "22363"
    assert beauty.sequences["1"] == ["1", "2", "3", "4", "5"]
    assert beauty.sequences["2"] == ["6", "7", "8", "9", "10", "4", "11"]
    stats = beauty.stats()
    assert stats["num_interactions"] == 198502
    assert stats["seq_len_mean"] == pytest.approx(8.8764, abs=1e-4)
    assert (stats["seq_len_median"], stats["seq_len_min"], stats["seq_len_max"]) == (6, 5, 204)
    assert stats["density"] == pytest.approx(198502 / (22363 * 12101))
    assert stats["users_with_repeats"] == 0
    rows, offsets = beauty.sequence_rows()
    assert rows.shape == (198502,) and offsets[-1] == 198502
    assert beauty.item_ids[rows[offsets[1]]] == "6"  # user "2" starts with item "6"


def test_bundled_folder_path_equals_name(beauty):
    from genrec.data.registry import BUNDLED_ROOT

    by_path = load_dataset(BUNDLED_ROOT / "amazon-beauty")
    assert by_path.name == "amazon-beauty"
    assert by_path.sequences == beauty.sequences


def _write_s3rec(folder, lines, meta=None, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(folder / "sequential_data.txt.gz", "wt") as handle:
            handle.write(text)
    else:
        (folder / "sequential_data.txt").write_text(text)
    if meta is not None:
        (folder / "item_meta.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    return folder


def test_sequential_folder_with_meta(tmp_path):
    meta = [{"item_id": 7, "title": "seven"}, {"item_id": 3, "title": "three"}, {"item_id": 9, "title": ""}]
    folder = _write_s3rec(tmp_path / "toy", ["u1 3 7 9", "u0 9 3\r"], meta, gz=True)
    assert detect_format(folder) == "sequential"
    data = load_dataset(folder)
    assert data.name == "toy"
    assert data.user_ids == ["u1", "u0"]
    assert data.sequences == {"u1": ["3", "7", "9"], "u0": ["9", "3"]}
    assert data.item_ids == ["7", "3", "9"]  # catalog order = metadata order
    assert data.catalog.title("3") == "three"


def test_sequential_without_meta_orders_items_by_first_appearance(tmp_path):
    data = load_dataset(_write_s3rec(tmp_path / "plain", ["1 5 2", "2 2 8 5"]))
    assert data.item_ids == ["5", "2", "8"]
    assert not data.catalog.has_text


def test_sequential_errors_name_file_and_line(tmp_path):
    folder = _write_s3rec(tmp_path / "bad", ["1 5 2", "2", "3 4 4"])
    with pytest.raises(ValueError, match=r"sequential_data.txt:2: malformed line '2'"):
        load_dataset(folder)
    folder = _write_s3rec(tmp_path / "dup", ["1 5 2", "1 4 4"])
    with pytest.raises(ValueError, match=r"sequential_data.txt:2: user '1' appears on more than one line"):
        load_dataset(folder)
    folder = _write_s3rec(tmp_path / "unknown", ["1 1 2", "2 2 99"], [{"item_id": 1}, {"item_id": 2}])
    with pytest.raises(ValueError, match=r"sequential_data.txt:2: unknown item id '99'"):
        load_dataset(folder)
    folder = _write_s3rec(tmp_path / "badmeta", ["1 1 2"])
    (folder / "item_meta.jsonl").write_text('{"item_id": 1}\n{"item_id": 2, "title": oops}\n')
    with pytest.raises(ValueError, match=r"item_meta.jsonl:2: malformed JSON"):
        load_dataset(folder)
    (folder / "item_meta.jsonl").write_text('{"item_id": 1}\n{"title": "no id"}\n')
    with pytest.raises(ValueError, match=r"item_meta.jsonl:2: missing field 'item_id'"):
        load_dataset(folder)


def test_missing_and_undetectable_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no bundled dataset of that name"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("x")
    with pytest.raises(ValueError, match="cannot detect the dataset format.*notes.md"):
        load_dataset(tmp_path / "empty")
    folder = _write_s3rec(tmp_path / "seq", ["1 1 2"])
    with pytest.raises(ValueError, match=r"`format` \('xml'\) must be one of"):
        load_dataset(folder, format="xml")
    with pytest.raises(FileNotFoundError, match="has no sequential_data"):
        load_dataset(tmp_path / "empty", format="sequential")


def test_table_csv_stable_timestamp_sort(tmp_path):
    # u2's rows at t=5 appear as b then a in the file: equal timestamps keep file order.
    csv = tmp_path / "log" / "interactions.csv"
    csv.parent.mkdir()
    csv.write_text(
        "user_id,item_id,timestamp,rating\n"
        "u2,c,9,5\n"
        "u1,a,3,4\n"
        "u2,b,5,1\n"
        "u1,b,1,5\n"
        "u2,a,5,3\n"
        "u1,c,2,2\n"
    )
    assert detect_format(csv.parent) == "table"
    data = load_dataset(csv.parent)
    assert data.user_ids == ["u2", "u1"]  # first appearance
    assert data.sequences == {"u2": ["b", "a", "c"], "u1": ["b", "c", "a"]}
    assert data.timestamps == {"u2": [5, 5, 9], "u1": [1, 2, 3]}
    assert data.item_ids == ["b", "a", "c"]
    high = load_dataset(csv, min_rating=3)
    assert high.sequences == {"u2": ["a", "c"], "u1": ["b", "a"]}


def test_table_formats_columns_and_dates(tmp_path):
    frame = pd.DataFrame({
        "visitor": [10, 10, 11, 10],
        "product": [1, 2, 1, 3],
        "when": ["2020-01-02", "2020-01-01", "2020-01-01", "2021-05-01"],
    })
    frame.to_parquet(tmp_path / "log.parquet")
    data = load_dataset(tmp_path / "log.parquet", user_col="visitor", item_col="product", time_col="when")
    assert data.sequences == {"10": ["2", "1", "3"], "11": ["1"]}  # integer ids become strings
    frame.to_csv(tmp_path / "log.tsv", sep="\t", index=False)
    tsv = load_dataset(tmp_path / "log.tsv", format="table", user_col="visitor", item_col="product",
                       time_col="when")
    assert tsv.sequences == data.sequences
    (tmp_path / "gz").mkdir()
    with gzip.open(tmp_path / "gz" / "interactions.csv.gz", "wt") as handle:
        handle.write("user_id,item_id,timestamp\na,1,2\na,2,1\nb,1,1\n")
    assert load_dataset(tmp_path / "gz").sequences == {"a": ["2", "1"], "b": ["1"]}
    with pytest.raises(ValueError, match=r"the user column 'nobody' \(`user_col`\) is not a column"):
        load_dataset(tmp_path / "log.tsv", user_col="nobody")
    with pytest.raises(ValueError, match=r"no user column found.*user_col="):
        load_dataset(tmp_path / "log.tsv")


def test_table_without_time_keeps_file_order_and_bad_cells(tmp_path):
    (tmp_path / "a.csv").write_text("user,item\nx,3\nx,1\ny,2\nx,2\n")
    assert load_dataset(tmp_path / "a.csv").sequences == {"x": ["3", "1", "2"], "y": ["2"]}
    (tmp_path / "b.csv").write_text("user,item,timestamp\nx,3,1\nx,,2\n")
    with pytest.raises(ValueError, match=r"b.csv:3: empty value in column 'item'"):
        load_dataset(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("user,item,timestamp\nx,3,1\nx,4,yesterday-ish\n")
    with pytest.raises(ValueError, match=r"c.csv:3: timestamp 'yesterday-ish' is not a number"):
        load_dataset(tmp_path / "c.csv")
    (tmp_path / "e.csv").write_text("user,item,timestamp\nx,3,2020-01-01\nx,4,not a date\n")
    with pytest.raises(ValueError, match=r"e.csv:3: timestamp 'not a date' is neither a number nor a date"):
        load_dataset(tmp_path / "e.csv")
    (tmp_path / "d.csv").write_text("user,item,timestamp\nx,3,1\nx,4,2,extra\n")
    with pytest.raises(ValueError, match=r"d.csv: malformed table.*line 3"):
        load_dataset(tmp_path / "d.csv")


def test_table_with_meta_rejects_unknown_item(tmp_path):
    (tmp_path / "interactions.csv").write_text("user,item\nx,1\nx,5\n")
    (tmp_path / "item_meta.jsonl").write_text('{"item_id": "1", "title": "one"}\n')
    with pytest.raises(ValueError, match=r"interactions.csv: unknown item id '5' \(user 'x'\)"):
        load_dataset(tmp_path)


def _write_movielens(folder, ratings, movies=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text("\n".join(ratings) + "\n", encoding="latin-1")
    if movies is not None:
        (folder / "movies.dat").write_text("\n".join(movies) + "\n", encoding="latin-1")
    return folder


def test_movielens_synthetic(tmp_path):
    folder = _write_movielens(
        tmp_path / "ml",
        ["1::20::5::978300760", "1::10::3::978300700", "2::10::4::978300000", "1::30::4::978300760"],
        ["10::Amélie (2001)::Comedy|Romance", "20::Heat (1995)::Action|Crime|Thriller",
         "30::Toy Story (1995)::Animation|Children's|Comedy"],
    )
    assert detect_format(folder) == "movielens"
    data = load_dataset(folder)
    assert data.sequences == {"1": ["10", "20", "30"], "2": ["10"]}  # tie at ...760 keeps file order
    assert data.timestamps["1"] == [978300700, 978300760, 978300760]
    assert data.item_ids == ["10", "20", "30"]
    assert data.catalog.title("10") == "Amélie (2001)"
    assert data.catalog.text("20") == "Title: Heat (1995); Genres: Action, Crime, Thriller"
    assert load_dataset(folder, min_rating=4).sequences == {"1": ["20", "30"], "2": ["10"]}


def test_movielens_errors(tmp_path):
    folder = _write_movielens(tmp_path / "bad", ["1::10::5::978300760", "1::20::5", "2::10::4::1"])
    with pytest.raises(ValueError, match=r"ratings.dat:2: malformed line '1::20::5'"):
        load_dataset(folder)
    folder = _write_movielens(tmp_path / "bad2", ["1::10::5::978300760", "2::10::4::1", "2::10::x::1"])
    with pytest.raises(ValueError, match=r"ratings.dat:3: field 3 \('x'\) must be a number"):
        load_dataset(folder)
    folder = _write_movielens(tmp_path / "unknown", ["1::10::5::1", "1::99::5::2"], ["10::A (1990)::Drama"])
    with pytest.raises(ValueError, match=r"ratings.dat: unknown item id '99'"):
        load_dataset(folder)
    folder = _write_movielens(tmp_path / "badmovies", ["1::10::5::1"], ["10::A (1990)::Drama", "11 B"])
    with pytest.raises(ValueError, match=r"movies.dat:2: malformed line '11 B'"):
        load_dataset(folder)


def test_kcore_is_iterative():
    # Item "z" has 2 interactions; dropping it leaves user "c" with 1, which drops item "y" to 1.
    sequences = {"a": ["x", "y", "x"], "b": ["x", "w", "w"], "c": ["z", "y"], "d": ["z", "w", "x"]}
    filtered, items = kcore_filter(sequences, min_user_interactions=2, min_item_interactions=3)
    # Round 1 drops items y (2) and z (2); user c is left with nothing; a -> [x, x]; d -> [w, x].
    assert filtered == {"a": ["x", "x"], "b": ["x", "w", "w"], "d": ["w", "x"]}
    assert items == {"x", "w"}
    again, _ = kcore_filter(filtered, min_user_interactions=2, min_item_interactions=3)
    assert again == filtered  # fixed point
    # A chain: dropping item q makes user u2 short, which makes item p short.
    chain = {"u1": ["p", "r", "r"], "u2": ["p", "q"], "u3": ["r", "s", "s"], "u4": ["s", "r"]}
    out, kept = kcore_filter(chain, min_user_interactions=2, min_item_interactions=2)
    assert out == {"u1": ["r", "r"], "u3": ["r", "s", "s"], "u4": ["s", "r"]}
    assert kept == {"r", "s"}
    with pytest.raises(ValueError, match="`min_item_interactions`"):
        kcore_filter(chain, min_item_interactions=-1)


def test_kcore_through_load_dataset_shrinks_catalog(tmp_path):
    (tmp_path / "interactions.csv").write_text(
        "user,item,timestamp\n" + "".join(f"u{u},i{i},{i}\n" for u in range(4) for i in range(3))
        + "u9,rare,1\n"
    )
    data = load_dataset(tmp_path, min_user_interactions=2, min_item_interactions=2)
    assert "rare" not in data.catalog and "u9" not in data.sequences
    assert data.num_items == 3 and data.num_users == 4 and data.timestamps["u0"] == [0, 1, 2]
    with pytest.raises(ValueError, match="no user is left after the k-core filter"):
        load_dataset(tmp_path, min_user_interactions=50)


def test_interaction_data_validates_items():
    with pytest.raises(ValueError, match=r"unknown item id 'b' in the sequence of user 'u'"):
        InteractionData(name="x", sequences={"u": ["a", "b"]}, catalog=ItemCatalog(["a"]))


def test_cli_stats(capsys, tmp_path):
    from genrec.cli import main

    assert main(["data", "stats", "amazon-beauty", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["num_users"], stats["num_items"], stats["num_interactions"]) == (22363, 12101, 198502)
    assert stats["seq_len_median"] == 6 and stats["seq_len_max"] == 204
    assert stats["consecutive_id_rate"] > 100 * stats["consecutive_id_rate_chance"]
    folder = _write_s3rec(tmp_path / "toy", ["1 1 2 3", "2 2 3 1"])
    assert main(["data", "stats", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_interactions"] == 6
    assert main(["data", "stats", str(folder)]) == 0
    table = capsys.readouterr().out
    assert re.search(r"num_users\s+2\n", table) and re.search(r"seq_len_mean\s+3\.0000\n", table)
    assert re.search(r"density\s+1\.0000\n", table)  # 6 interactions / (2 users * 3 items)
    assert main(["data", "stats", str(tmp_path / "missing")]) == 2
    assert "no bundled dataset" in capsys.readouterr().err


# ----- silent wrong results: duplicate events and missing-value cells -------------------------------------------
def _write_log(path, rows, header="user_id,item_id,timestamp"):
    path.write_text(header + "\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    return path


def _synthetic_rows(num_users=60, num_items=40, length=6, seed=0):
    import random

    rng = random.Random(seed)
    return [(f"u{u}", f"i{item}", t) for u in range(num_users)
            for t, item in enumerate(rng.sample(range(num_items), length))]


def _repeat_last_item_recall(data, k=10):
    """Recall@k of a scorer that ranks the last history item first: it exploits any 'test item in history' leak."""
    import torch

    from genrec.data import leave_one_out
    from genrec.evaluation import evaluate_scores

    split = leave_one_out(data)
    index = data.item_index
    scores = torch.zeros(len(split.test), data.num_items)
    for row, history in enumerate(split.test["history"]):
        scores[row, index[history[-1]]] = 1.0
    targets = torch.tensor([index[t] for t in split.test["target"]])
    return evaluate_scores(scores, targets, ks=(k,))[f"recall@{k}"]


def test_doubled_table_no_longer_leaks_the_test_item(tmp_path, caplog):
    rows = _synthetic_rows()
    single = load_dataset(_write_log(tmp_path / "single.csv", rows))
    doubled_path = _write_log(tmp_path / "doubled.csv", [row for row in rows for _ in range(2)])
    kept = load_dataset(doubled_path, keep_duplicates=True)
    assert kept.duplicates_dropped == 0 and kept.num_interactions == 2 * len(rows)
    assert _repeat_last_item_recall(kept) > 0.9  # the leak the option keeps: test item == last history item
    with caplog.at_level("WARNING"):
        data = load_dataset(doubled_path)
    assert data.duplicates_dropped == len(rows) and data.stats()["duplicates_dropped"] == len(rows)
    assert f"dropped {len(rows)} duplicate events" in caplog.text
    assert "keep_duplicates=True" in caplog.text
    assert data.sequences == single.sequences and data.timestamps == single.timestamps
    assert _repeat_last_item_recall(data) == _repeat_last_item_recall(single) == 0.0
    assert single.duplicates_dropped == 0


def test_repeat_consumption_is_kept_and_duplicates_without_time(tmp_path):
    # Same user, item and timestamp twice (even with another item between the ties) is one event; the same item
    # at a later time is repeat consumption and stays.
    log = _write_log(tmp_path / "log.csv", [("u", "a", 1), ("u", "b", 2), ("u", "a", 2), ("u", "b", 2),
                                            ("u", "a", 3), ("v", "a", 1)])
    data = load_dataset(log)
    assert data.sequences == {"u": ["a", "b", "a", "a"], "v": ["a"]} and data.timestamps["u"] == [1, 2, 2, 3]
    assert data.duplicates_dropped == 1
    assert data.stats()["users_with_repeats"] == 1 and data.stats()["last_item_in_history_rate"] == 0.5
    # Without a time column the file order is the time: an item right after itself is the duplicate.
    plain = _write_log(tmp_path / "plain.csv", [("u", "a"), ("u", "a"), ("u", "b"), ("u", "a")], "user,item")
    assert load_dataset(plain).sequences == {"u": ["a", "b", "a"]}
    assert load_dataset(plain, keep_duplicates=True).sequences == {"u": ["a", "a", "b", "a"]}
    # MovieLens and S3-Rec files follow the same rule.
    ml = _write_movielens(tmp_path / "ml", ["1::10::5::7", "1::10::5::7", "1::20::4::8"])
    assert load_dataset(ml).sequences == {"1": ["10", "20"]}
    s3 = _write_s3rec(tmp_path / "s3", ["1 5 5 2 5"])
    assert load_dataset(s3).sequences == {"1": ["5", "2", "5"]}


def test_cli_stats_reports_dropped_duplicates(capsys, tmp_path):
    from genrec.cli import main

    rows = _synthetic_rows(num_users=4, length=4)
    log = _write_log(tmp_path / "doubled.csv", rows + rows)
    assert main(["data", "stats", str(log), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["duplicates_dropped"] == len(rows) and stats["num_interactions"] == len(rows)
    assert main(["data", "stats", str(log), "--json", "--keep-duplicates"]) == 0
    assert json.loads(capsys.readouterr().out)["duplicates_dropped"] == 0
    assert main(["data", "stats", str(log)]) == 0
    assert re.search(rf"duplicates_dropped\s+{len(rows)}\n", capsys.readouterr().out)


@pytest.mark.parametrize("cell", ["NaN", "nan", "null", "NULL", "NA", "N/A", "None", "<NA>"])
def test_missing_value_cells_are_not_item_ids(tmp_path, cell):
    csv = tmp_path / "log.csv"
    csv.write_text(f"user_id,item_id,timestamp\nu,a,1\nu,{cell},2\nv,a,1\n")
    with pytest.raises(ValueError, match=rf"log.csv:3: missing value '{re.escape(cell)}' in id column 'item_id'"):
        load_dataset(csv)
    csv.write_text(f"user_id,item_id,timestamp\nu,a,1\n{cell},b,2\n")
    with pytest.raises(ValueError, match=r"log.csv:3: missing value .* in id column 'user_id'"):
        load_dataset(csv)
    pd.DataFrame({"user_id": ["u", "u"], "item_id": ["a", cell], "timestamp": [1, 2]}).to_parquet(
        tmp_path / "log.parquet")
    with pytest.raises(ValueError, match=r"log.parquet row 1: missing value"):
        load_dataset(tmp_path / "log.parquet")
    ml = _write_movielens(tmp_path / "ml", ["1::10::5::7", f"1::{cell}::5::8"])
    with pytest.raises(ValueError, match=r"ratings.dat:2: missing value"):
        load_dataset(ml)
    if " " not in cell:
        s3 = _write_s3rec(tmp_path / "s3", ["1 5 2", f"2 5 {cell} 2"])
        with pytest.raises(ValueError, match=rf"sequential_data.txt:2: missing value '{re.escape(cell)}'"):
            load_dataset(s3)


def test_has_item_text_reads_file_names_only(tmp_path):
    from genrec.data import has_item_text

    assert has_item_text("amazon-beauty")
    plain = _write_s3rec(tmp_path / "plain", ["1 5 2"])
    assert not has_item_text(plain) and not has_item_text(plain / "sequential_data.txt")
    with_meta = _write_s3rec(tmp_path / "meta", ["1 1 2"], [{"item_id": 1, "title": "a"}, {"item_id": 2}])
    assert has_item_text(with_meta)
    with pytest.raises(FileNotFoundError, match="no bundled dataset"):
        has_item_text(tmp_path / "missing")
