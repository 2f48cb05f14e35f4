"""benchmarks/run_table.py: every model with its smoke preset, one after another, on the toy data; table + chart."""

import json
from pathlib import Path

import pytest

from tests.benchmark_helpers import load_benchmark


def _module():
    return load_benchmark('run_table')


def test_overrides_split_per_model_and_the_table_states_bigrec_subsample():
    table = _module()
    common, per_model = table.split_overrides(["training.seed=1", "bigrec:model.num_beams=2"], ["sasrec", "bigrec"])
    assert common == ["training.seed=1"] and per_model == {"sasrec": [], "bigrec": ["model.num_beams=2"]}
    with pytest.raises(ValueError, match="'p5' is not one of the chosen models"):
        table.split_overrides(["p5:model.d_model=8"], ["sasrec"])
    row = {"test/recall@5": 0.05, "test/recall@10": 0.08, "test/ndcg@5": 0.03, "test/ndcg@10": 0.04,
           "test/invalid_rate": 0.0, "train/seconds": 600.4, "train/epochs": 10.0, "train/stopped_by": "time_budget",
           "model/num_parameters": 1_234_567, "model/num_active_parameters": 1_000_000, "data/num_users": 22363,
           "train/num_examples": 22363}
    rows = [{"name": "sasrec", "label": "SASRec (CE)", "preset": "sasrec-beauty.yaml", **row},
            {"name": "bigrec", "label": "BIGRec", "preset": "bigrec-beauty.yaml", **row, "data/num_users": 500,
             "train/num_examples": 1024},
            {"name": "onerec-moe", "label": "OneRec, MoE", "preset": "onerec-beauty.yaml", "error": "exit status 1\nx"}]
    header = {"dataset": "amazon-beauty", "machine": "cpu", "budget": "25 min", "date": "2026-12-07", "load": 2.0}
    text = table.markdown_table(rows, header, published=True)
    lines = text.splitlines()
    assert "| SASRec (CE) (`sasrec-beauty.yaml`) | 0.0500 | 0.0800 | 0.0300 | 0.0400 | 0.0000 | 600 s, 10.00 ep " \
           "(time_budget) | 1.23M | 1.00M |" in lines
    assert any("1024 training prompts, first 500 users only" in line for line in lines)
    assert any(line.startswith("| OneRec, MoE (`onerec-beauty.yaml`, `model.ffn_type=moe`) | failed: exit status 1")
               for line in lines)
    assert any("TIGER" in line and "0.0648" in line for line in lines)
    assert "TIGER" not in table.markdown_table(rows[:1], header, published=False)


@pytest.mark.slow
def test_smoke_mode_trains_every_model_in_turn_and_writes_table_json_and_chart(tmp_path, toy_dataset, monkeypatch):
    from tests.llm_helpers import save_tiny_llama

    folder = Path(toy_dataset)  # 24 items with titles: the text-based tokenizers, RecGPT and BIGRec read them
    titles = [f"Product {item} shade {item % 5}" for item in range(1, 25)]
    (folder / "item_meta.jsonl").write_text(
        "".join(json.dumps({"item_id": item, "title": title}) + "\n" for item, title in enumerate(titles, 1)))
    llama = save_tiny_llama(tmp_path / "tiny-llama", titles)
    monkeypatch.setenv("GENREC_CACHE", str(tmp_path / "cache"))
    tiny_ids = "{num_levels: 2, codebook_size: 4, balanced: true, num_iters: 3, num_threads: 1}"
    overrides = ["training.num_train_epochs=1", "data.max_users=null",
                 f"p5-semantic:model.item_tokenizer_config={tiny_ids}",
                 "p5-collab:model.item_tokenizer_config={num_clusters: 3, leaf_size: 4}",
                 f"onerec-dense:model.item_tokenizer_config={tiny_ids}",
                 f"onerec-moe:model.item_tokenizer_config={tiny_ids}",
                 "recgpt:model.tokenizer={num_chunks: 2, levels: [4, 3], epochs: 1, collaborative_dims: 4}",
                 f"bigrec:model.base_model_name_or_path={llama}", "bigrec:model.max_new_tokens=12"]
    result = tmp_path / "out" / "table.json"
    result.parent.mkdir()
    argv = ["--smoke", "--dataset", toy_dataset, "--workdir", str(tmp_path / "runs"), "--result", str(result),
            "--bigrec-train-examples", "3"]
    for override in overrides:
        argv += ["--set", override]
    assert _module().main(argv) == 0
    saved = json.loads(result.read_text())
    rows = {row["name"]: row for row in saved["rows"]}
    assert list(rows) == ["sasrec", "p5-semantic", "p5-collab", "onerec-dense", "onerec-moe", "recgpt", "bigrec",
                          "popularity", "textknn"]
    for name in ("p5-semantic", "p5-collab", "onerec-dense", "onerec-moe", "recgpt"):  # the cheap item layout
        config = json.loads(Path(rows[name]["run_folder"], "checkpoint", "config.json").read_text())
        assert config["input_granularity"] == "item", name
    metrics = json.loads(Path(rows["recgpt"]["run_folder"], "metrics.json").read_text())
    assert metrics["tune/text_prior_weight"] in (0.0, 0.5, 1.0)  # chosen on validation by the preset's sweep
    for name, row in rows.items():
        assert "error" not in row, row.get("error")
        assert row["data/num_users"] == 48 and 0.0 <= row["test/recall@10"] <= 1.0, name
        assert 0.0 <= row["test/invalid_rate"] <= 1.0
        if name not in ("popularity", "textknn"):  # baselines: fitted without weights or training steps
            assert row["model/num_active_parameters"] > 0
            assert Path(row["plots"][0]).name == "training_curve.png"
    assert rows["bigrec"]["train/num_examples"] == 3  # the subsample the table states
    moe, dense = rows["onerec-moe"], rows["onerec-dense"]
    assert moe["model/num_active_parameters"] < moe["model/num_parameters"]
    assert dense["model/num_active_parameters"] == dense["model/num_parameters"]
    assert any(path.endswith("expert_load.png") for path in moe["plots"])
    # the runs never overlapped: each one's folder was complete before the next one's log was opened
    finished = [Path(row["run_folder"], "metrics.json").stat().st_mtime for row in rows.values()]
    started = [Path(row["log"]).stat().st_ctime for row in rows.values()]
    assert all(done <= start for done, start in zip(finished, started[1:]))
    table = result.with_suffix(".md").read_text()
    assert table.count("\n| ") == 2 + len(rows) and "TIGER" not in table  # header + rule + rows; smoke: no refs
    assert result.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
