"""benchmarks/bench_quality.py end to end on the tiny toy dataset: sequential runs, curves, baselines, plot."""

import json
from pathlib import Path

import pytest
import yaml

from tests.benchmark_helpers import load_benchmark


def _bench_module():
    return load_benchmark('bench_quality')


def test_value_at_and_plan_refuse_mixed_protocols(tmp_path, monkeypatch):
    bench = _bench_module()
    assert bench.value_at([[0.5, 0.1], [1.2, 0.3]], 1.0) == 0.1 and bench.value_at([[0.5, 0.1]], 0.2) is None
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(yaml.safe_dump({"data": {"max_users": 10}}))
    second.write_text(yaml.safe_dump({"data": {"max_users": 20}}))
    with pytest.raises(ValueError, match="same data and exclude_history_items"):
        bench.plan_runs([str(first), str(second)], [], baselines=True)
    runs = bench.plan_runs([str(first), str(first)], [], baselines=True)
    assert [run["name"] for run in runs] == ["a", "a-2", "popularity-beauty", "textknn-beauty"]
    assert "data.max_users=10" in runs[-1]["extra"]  # the baselines rank the same users
    no_text = tmp_path / "plain"
    no_text.mkdir()
    (no_text / "sequential_data.txt").write_text("1 1 2 3\n2 2 3 1\n")
    first.write_text(yaml.safe_dump({"data": {"dataset": str(no_text)}}))
    runs = bench.plan_runs([str(first)], [], baselines=True)  # no item text: no text-kNN row
    assert [run["name"] for run in runs] == ["a", "popularity-beauty"]
    monkeypatch.chdir(tmp_path)  # a dataset path relative to here reaches the runs (in their own folder) absolute
    first.write_text(yaml.safe_dump({"data": {"dataset": "plain"}}))
    runs = bench.plan_runs([str(first)], [], baselines=True)
    assert [run["extra"][0] for run in runs] == [f"data.dataset={no_text.resolve()}"] * 2
    with pytest.raises(ValueError, match="--marks"):
        bench._parse_marks([5, 10], budget_minutes=2)


@pytest.mark.slow
def test_bench_quality_runs_models_one_after_another_and_writes_curves_and_plot(tmp_path, toy_dataset, monkeypatch):
    bench = _bench_module()
    folder = Path(toy_dataset)  # 24 items; titles so that text-kNN has text to embed (bundled MiniLM)
    (folder / "item_meta.jsonl").write_text(
        "".join(json.dumps({"item_id": item, "title": f"Product {item} shade {item % 5}"}) + "\n"
                for item in range(1, 25)))
    config = tmp_path / "sasrec-toy.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"type": "sasrec", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1,
                  "max_position_embeddings": 8},
        "data": {"dataset": toy_dataset},
        "training": {"num_train_epochs": 400, "per_device_train_batch_size": 16, "eval_strategy": "no",
                     "eval_ks": [5, 10], "learning_rate": 0.01, "seed": 0},
    }))
    monkeypatch.setenv("GENREC_CACHE", str(tmp_path / "cache"))
    result, plot = tmp_path / "out" / "bench.json", tmp_path / "out" / "bench.png"
    result.parent.mkdir()
    code = bench.main(["--configs", str(config), "--budget-minutes", "0.1", "--marks", "0.02", "0.04",
                       "--workdir", str(tmp_path / "runs"), "--result", str(result), "--plot", str(plot),
                       "--load-interval", "0.5"])
    assert code == 0
    saved = json.loads(result.read_text())
    rows = {row["name"]: row for row in saved["runs"]}
    assert list(rows) == ["sasrec-toy", "popularity-beauty", "textknn-beauty"]
    sasrec = rows["sasrec-toy"]
    assert sasrec["train/stopped_by"] == "time_budget" and 0.1 * 60 <= sasrec["train/seconds"] < 60
    minutes = [at for at, _ in sasrec["curve"]]
    assert len(minutes) == 2 and minutes[0] >= 0.02 and minutes[1] >= 0.04  # eval_strategy "no": the marks only
    assert sasrec["best_valid/ndcg@10"] == max(value for _, value in sasrec["curve"])
    for name in ("popularity-beauty", "textknn-beauty"):
        assert rows[name]["train/stopped_by"] == "fitted" and len(rows[name]["curve"]) == 1
        assert rows[name]["data/num_users"] == sasrec["data/num_users"] == 48
    # the runs never overlapped: each one's load samples are labelled with it, in order
    labels = [sample[4] for sample in saved["load_average"]["samples"] if sample[4]]
    assert labels == sorted(labels, key=list(rows).index)
    assert saved["load_average"]["load_1m_mean"] is not None and plot.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "runs" / "sasrec-toy" / "checkpoint" / "model.safetensors").is_file()


@pytest.mark.slow
def test_a_failing_run_is_reported_and_the_benchmark_exits_with_status_1(tmp_path, capsys):
    bench = _bench_module()
    config = tmp_path / "broken.yaml"
    config.write_text(yaml.safe_dump({"model": {"type": "popularity"}, "data": {"dataset": str(tmp_path / "nothing")}}))
    result = tmp_path / "bench.json"
    code = bench.main(["--configs", str(config), "--no-baselines", "--budget-minutes", "1", "--result", str(result)])
    assert code == 1
    [row] = json.loads(result.read_text())["runs"]
    assert row["name"] == "broken" and row["error"].startswith("exit status 2")
    assert "FAILED" in capsys.readouterr().out
