"""OpenMP wait policy: ``import genrec`` chooses PASSIVE before torch loads OpenMP; too late, it warns once.

Each case runs in a fresh interpreter (OpenMP reads ``OMP_WAIT_POLICY`` once, when torch is imported; the test
process itself has it set by tests/conftest.py).
"""

import os
import subprocess
import sys

import pytest


def _run(script: str, tmp_path, **env_overrides) -> str:
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env.update({"PYTHONSAFEPATH": "1", **env_overrides})
    result = subprocess.run([sys.executable, "-c", script], check=False, cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() + "\n" + result.stderr


@pytest.mark.parametrize("first", ["genrec", "genrec.data"])
def test_importing_genrec_before_torch_sets_a_passive_wait_policy(tmp_path, first):
    script = (f"import os, {first}, torch, genrec, genrec.utils.threads as threads; torch.set_num_threads(2); "
              "print(os.environ.get('OMP_WAIT_POLICY'), genrec.OPENMP_WAIT_POLICY_SET, threads.openmp_may_spin())")
    assert _run(script, tmp_path).startswith("PASSIVE True False")


def test_a_policy_the_user_chose_is_kept(tmp_path):
    script = "import os, genrec; print(os.environ.get('OMP_WAIT_POLICY'), genrec.OPENMP_WAIT_POLICY_SET)"
    assert _run(script, tmp_path, OMP_WAIT_POLICY="ACTIVE").startswith("ACTIVE False")


def test_torch_imported_first_warns_once_from_beam_search(tmp_path):
    script = """
import os, torch
torch.set_num_threads(2)
import genrec
from genrec.decoding import Catalog, beam_search
from tests_tiny_t5 import tiny_t5
print(os.environ.get("OMP_WAIT_POLICY"), genrec.OPENMP_WAIT_POLICY_SET)
model = tiny_t5()
catalog = Catalog.from_codes(torch.tensor([[3, 5], [4, 6]]))
for _ in range(2):
    beam_search(model, catalog, input_ids=torch.tensor([[3, 4, 1]]), num_beams=2)
"""
    (tmp_path / "tests_tiny_t5.py").write_text(
        "from transformers import T5Config, T5ForConditionalGeneration\n"
        "def tiny_t5():\n"
        "    config = T5Config(vocab_size=8, d_model=8, d_ff=16, d_kv=4, num_heads=2, num_layers=1,\n"
        "                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)\n"
        "    return T5ForConditionalGeneration(config).eval()\n")
    output = _run(script, tmp_path, PYTHONPATH=str(tmp_path))
    assert output.startswith("None False")  # too late to choose a policy: torch already loaded OpenMP
    assert output.count("torch was imported before genrec without OMP_WAIT_POLICY") == 1, output
    assert "OMP_WAIT_POLICY=PASSIVE" in output and "torch.set_num_threads(1)" in output
