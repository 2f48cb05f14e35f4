"""Hub-ready checkpoint folders: every registered model's ``save_pretrained`` folder works alone.

Each model is built tiny (as in ``test_recommender_contract.py``), saved, and its folder ALONE is copied to a fresh
place (what ``huggingface_hub.upload_folder`` would send and a user would download). One fresh Python process then
does what the model card says: ``import genrec``, ``Auto*.from_pretrained(copy)``, ``recommend`` (the reward model:
``item_rewards``), and must give the answers of the model that was saved. The cards are read back with
``huggingface_hub.ModelCard`` and their metadata checked.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from genrec.models.registry import MODEL_RECORDS, record_for_model_type

# the contract test builds every recommender tiny over one 12-item catalog; BIGRec's base is a tiny random Llama
from tests.models.test_recommender_contract import IDS, TRAIN, _build

HISTORY = ["i1", "i2", "i3"]
NAMES = ["sasrec", "popularity", "textknn", "recgpt", "p5", "onerec", "bigrec", "bigrec-merged", "reward"]
GENERATIVE = {"recgpt", "p5", "onerec", "bigrec", "bigrec-merged"}
# what each folder must hold besides config.json and README.md (weights, catalog, tokenizers)
EXPECTED_FILES = {
    "sasrec": {"model.safetensors", "item_ids.json"},
    "popularity": {"model.safetensors", "item_ids.json"},
    "textknn": {"model.safetensors", "item_ids.json"},
    "recgpt": {"model.safetensors", "item_ids.json", "catalog.safetensors", "item_tokenizer"},
    "p5": {"model.safetensors", "catalog.safetensors", "item_tokenizer", "tokenizer.json", "tokenizer_config.json"},
    "onerec": {"model.safetensors", "catalog.safetensors", "item_tokenizer", "tokenizer.json"},
    "bigrec": {"adapter", "tokenizer", "catalog.json"},
    "bigrec-merged": {"model", "tokenizer", "catalog.json"},
    "reward": {"model.safetensors", "item_ids.json"},
}


def _model(name, tmp_path_factory):
    if name == "reward":
        from genrec.models.reward import RewardModel, RewardModelConfig

        torch.manual_seed(0)
        config = RewardModelConfig(num_items=len(IDS), hidden_size=16, num_layers=1, num_heads=2, max_history_items=4)
        return RewardModel(config, item_ids=IDS)
    model = _build("bigrec" if name == "bigrec-merged" else name, tmp_path_factory)
    if name == "bigrec-merged":
        model.merge_and_unload()  # merged weights in model/: the folder needs no base model at all
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{name: (copied folder, expected output of the loaded model)} for every model kind."""
    from genrec.models.model_card import set_card_info

    copies = tmp_path_factory.mktemp("downloaded")
    result = {}
    for name in NAMES:
        model = _model(name, tmp_path_factory).eval()
        if name == "sasrec":  # what a run attaches before saving: the card then carries data and metrics
            set_card_info(model, dataset="toy-beauty", metrics={"test/recall@10": 0.25, "test/ndcg@10": 0.125,
                                                                "valid/recall@10": 0.5, "valid/num_users": 20},
                          data={"num_users": len(TRAIN), "num_items": len(IDS)}, written_by="genrec train")
        folder = tmp_path_factory.mktemp(f"saved-{name}") / "checkpoint"
        model.save_pretrained(folder)
        if name == "reward":
            expected = model.item_rewards([HISTORY], [["i4", "i5"]])
        else:
            expected = [[item, score] for item, score in model.recommend([HISTORY], k=3)[0]]
        copy = copies / name
        shutil.copytree(folder, copy)  # the folder alone, nothing beside it
        result[name] = (copy, expected)
    return result


_SCRIPT = """
import json, sys
import genrec  # registers genrec's model types with the transformers Auto classes
import transformers

out = {}
for name, folder, auto_name in json.loads(sys.argv[1]):
    model = getattr(transformers, auto_name).from_pretrained(folder)
    if name == "reward":
        out[name] = model.item_rewards([["i1", "i2", "i3"]], [["i4", "i5"]])
    else:
        out[name] = [[item, score] for item, score in model.recommend([["i1", "i2", "i3"]], k=3)[0]]
print("RESULT " + json.dumps(out))
"""


def test_every_model_has_a_folder_that_loads_alone_in_a_fresh_process(saved, tmp_path):
    assert {record.name for record in MODEL_RECORDS} <= {name.split("-")[0] for name in NAMES}  # none left out
    jobs = []
    for name, (folder, _) in saved.items():
        files = {path.name for path in folder.iterdir()}
        assert {"config.json", "README.md"} | EXPECTED_FILES[name] <= files, (name, sorted(files))
        config = json.loads((folder / "config.json").read_text())
        jobs.append([name, str(folder), record_for_model_type(config["model_type"]).auto_classes[0]])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONSAFEPATH": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(jobs)], capture_output=True, text=True,
                             cwd=tmp_path, env=env, timeout=900)
    assert process.returncode == 0, process.stderr[-3000:]
    line = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")][-1]
    got = json.loads(line[len("RESULT "):])
    for name, (_, expected) in saved.items():
        if name == "reward":
            assert got[name][0] == pytest.approx(expected[0], abs=1e-5), name
            continue
        assert [item for item, _ in got[name]] == [item for item, _ in expected], name
        assert [score for _, score in got[name]] == pytest.approx([score for _, score in expected], abs=1e-4), name


def test_model_cards_carry_the_hub_metadata_and_usage(saved):
    from huggingface_hub import ModelCard

    for name, (folder, _) in saved.items():
        card = ModelCard.load(folder / "README.md")
        data = card.data.to_dict()
        assert data["library_name"] == "genrec", name
        assert {"genrec", "recommendation"} <= set(data["tags"]), name
        assert ("generative-recommendation" in data["tags"]) == (name in GENERATIVE), name
        assert "pipeline_tag" not in data  # genrec models cannot serve a transformers pipeline widget
        model_type = json.loads((folder / "config.json").read_text())["model_type"]
        assert model_type in data["tags"]
        text = card.text
        assert "import genrec" in text and ".from_pretrained(" in text and "pip install" in text, name
        if name == "reward":
            assert "item_rewards(" in text
        else:
            assert "model.recommend([['i0', 'i1', 'i2']], k=10)" in text, name  # its own catalog's ids: runnable
            assert "genrec recommend --checkpoint OWNER/REPO --history i0 i1 i2" in text, name
        for entry in EXPECTED_FILES[name]:
            assert f"`{entry}" in text, (name, entry)  # the Files section lists what the folder holds
    # a run's card: dataset, metrics table and model-index (test and valid results)
    card = ModelCard.load(saved["sasrec"][0] / "README.md")
    data = card.data.to_dict()
    assert data["datasets"] == ["toy-beauty"]
    results = {(result.dataset_split, result.metric_type): result.metric_value for result in card.data.eval_results}
    assert results == {("test", "recall@10"): 0.25, ("test", "ndcg@10"): 0.125, ("valid", "recall@10"): 0.5}
    assert "| test | recall@10 | 0.25000 |" in card.text and "Trained on `toy-beauty`" in card.text
    # a bare save_pretrained says that nothing was measured
    assert "Not evaluated" in ModelCard.load(saved["p5"][0] / "README.md").text
    bigrec = ModelCard.load(saved["bigrec"][0] / "README.md").text
    assert "LoRA adapter" in bigrec and "must exist at that path" in bigrec

