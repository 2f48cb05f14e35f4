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
