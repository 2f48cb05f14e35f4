"""genrec.utils.hub.optional_file: optional files beside model weights through public huggingface_hub API only."""

import pytest

from genrec.utils.hub import hub_lookup, optional_file


def test_local_folder_present_missing_and_subfolder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "item_ids.json").write_text("{}")
    (tmp_path / "sub" / "catalog.safetensors").write_text("x")
    assert optional_file(tmp_path, "item_ids.json") == str(tmp_path / "item_ids.json")
    assert optional_file(str(tmp_path), "missing.json") is None
    assert optional_file(tmp_path, "catalog.safetensors", subfolder="sub") == str(tmp_path / "sub" / "catalog.safetensors")
    assert optional_file(tmp_path, "catalog.safetensors") is None


def test_hub_id_not_cached_offline_is_none_and_bad_ids_raise(tmp_path):
    # a well-formed repo id that is not in this (empty) cache: optional, so None (no network is touched)
    assert optional_file("genrec-tests/no-such-repo", "item_ids.json", cache_dir=tmp_path, local_files_only=True) is None
    from huggingface_hub.errors import HFValidationError

    with pytest.raises(HFValidationError):  # neither a folder nor a repo id: a real error, not "no file"
        optional_file("not/a/valid/repo/id", "item_ids.json", cache_dir=tmp_path, local_files_only=True)


def test_hub_lookup_keeps_only_location_arguments():
    kwargs = {"revision": "v1", "subfolder": "m", "dtype": "float32", "token": None, "device_map": "cpu"}
    assert hub_lookup(kwargs) == {"revision": "v1", "subfolder": "m", "token": None}


# ---------------------------------------------------------------------------------------------- Hub repo ids
# genrec.utils.hub.resolve_folder is the one place a path that may be a Hub repo id becomes a folder. These tests
# replace huggingface_hub.snapshot_download (no network): it must receive the repo id and revision, and the
# commands must then work on the folder it returns.

import json  # noqa: E402

from genrec.utils.hub import parse_repo_id, resolve_folder  # noqa: E402


def test_parse_repo_id_takes_owner_name_and_revision_only():
    assert parse_repo_id("genrec/sasrec-beauty") == ("genrec/sasrec-beauty", None)
    assert parse_repo_id("genrec/sasrec-beauty@v1.0") == ("genrec/sasrec-beauty", "v1.0")
    for path in ("runs/x/checkpoint", "./runs/x", "/abs/x", "~/x", "name", "a/../b", "a/b@", "owner/name/"):
        assert parse_repo_id(path) is None, path


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """snapshot_download replaced: records (repo_id, revision) and returns the folder registered for the repo."""
    import huggingface_hub

    repos, calls = {}, []

    def snapshot_download(repo_id, *, revision=None, **kwargs):
        calls.append((repo_id, revision))
        if repo_id not in repos:
            raise huggingface_hub.errors.LocalEntryNotFoundError(f"{repo_id} is not cached and the Hub is offline")
        return str(repos[repo_id])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return repos, calls


def test_a_local_path_wins_and_a_repo_id_is_downloaded(fake_hub, tmp_path, monkeypatch):
    repos, calls = fake_hub
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "name").mkdir(parents=True)  # a local folder that reads like a repo id: used as it is
    assert resolve_folder("owner/name").resolve() == tmp_path / "owner" / "name" and calls == []
    repos["someone/model"] = tmp_path / "snapshot"
    assert resolve_folder("someone/model@v2") == tmp_path / "snapshot" and calls == [("someone/model", "v2")]
    with pytest.raises(FileNotFoundError, match=r"--checkpoint 'someone/missing' is no local path, and the Hugging "
                                                r"Face Hub repo 'someone/missing' could not be downloaded"):
        resolve_folder("someone/missing", what="--checkpoint")
    with pytest.raises(FileNotFoundError, match="neither a local path nor a Hugging Face Hub repo id"):
        resolve_folder("runs/x/checkpoint")
    assert calls == [("someone/model", "v2"), ("someone/missing", None)]


def _saved_sasrec(toy_dataset, folder):
    from genrec.data import load_dataset
    from genrec.models.sasrec import SASRecModel

    data = load_dataset(toy_dataset)
    model = SASRecModel.from_dataset(data.catalog, None, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     max_position_embeddings=4)
    model.save_pretrained(folder)
    return model.eval()


def test_recommend_and_evaluate_take_a_hub_repo_id(fake_hub, toy_dataset, tmp_path, capsys):
    from genrec.cli import main

    repos, calls = fake_hub
    model = _saved_sasrec(toy_dataset, tmp_path / "snapshot")
    repos["someone/sasrec-toy"] = tmp_path / "snapshot"
    capsys.readouterr()
    assert main(["recommend", "--checkpoint", "someone/sasrec-toy@main", "--history", "3", "4", "-k", "3",
                 "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [row["item_id"] for row in record["recommendations"]] == [
        item for item, _ in model.recommend([["3", "4"]], k=3)[0]]
    assert main(["evaluate", "--checkpoint", "someone/sasrec-toy", "--dataset", toy_dataset]) == 0
    assert '"test/recall@10"' in capsys.readouterr().out
    assert calls == [("someone/sasrec-toy", "main"), ("someone/sasrec-toy", None)]


def test_a_bad_repo_id_is_one_line_and_exit_2(toy_dataset, tmp_path, capsys, monkeypatch):
    """The real snapshot_download, offline (tests set HF_HUB_OFFLINE=1) with an empty cache: nothing is fetched."""
    from huggingface_hub import constants

    from genrec.cli import main

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # never the network, whatever the environment says
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    for command in (["recommend", "--checkpoint", "nobody/no-such-model", "--history", "1"],
                    ["evaluate", "--checkpoint", "nobody/no-such-model@v9", "--dataset", toy_dataset]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith(f"genrec {command[0]}: error: --checkpoint 'nobody/no-such-model") and "Hub" in err


def test_item_tokenizer_folder_and_align_checkpoints_take_a_hub_repo_id(fake_hub, tmp_path):
    from types import SimpleNamespace

    from genrec.alignment.ipa import _resolve_checkpoint
    from genrec.data.catalog import ItemCatalog
    from genrec.tokenization import AutoItemTokenizer, get_tokenizer_class

    repos, calls = fake_hub
    catalog = ItemCatalog([str(i) for i in range(8)])
    tokenizer = get_tokenizer_class("random")(codebook_size=4, num_levels=2, seed=0).fit(catalog)
    tokenizer.save_pretrained(tmp_path / "tok")
    repos["someone/ids"] = tmp_path / "tok"
    assert AutoItemTokenizer.from_pretrained("someone/ids").codes.tolist() == tokenizer.codes.tolist()
    repos["someone/onerec"] = tmp_path / "base"
    assert _resolve_checkpoint("someone/onerec@r1", SimpleNamespace(source=None), "base.checkpoint") == tmp_path / "base"
    with pytest.raises(FileNotFoundError, match=r"`reward.checkpoint` 'someone/reward'"):
        _resolve_checkpoint("someone/reward", SimpleNamespace(source=None), "reward.checkpoint")
    assert calls == [("someone/ids", None), ("someone/onerec", "r1"), ("someone/reward", None)]
