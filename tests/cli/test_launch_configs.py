"""scripts/accelerate/*.yaml: every config parses and is documented; the two-process CPU one really starts two."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "scripts" / "accelerate"
SMOKE = REPO / "scripts" / "configs" / "sasrec-beauty-smoke.yaml"
EXPECTED = {  # file -> (distributed_type, num_processes, use_cpu)
    "cpu-1.yaml": ("NO", 1, True),
    "cpu-2-gloo.yaml": ("MULTI_GPU", 2, False),
    "gpu-1.yaml": ("NO", 1, False),
    "multi-gpu-ddp.yaml": ("MULTI_GPU", 2, False),
    "fsdp.yaml": ("FSDP", 2, False),
}


def test_every_launch_config_parses_and_is_documented_with_its_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert sorted(path.name for path in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)
    for name, (kind, processes, use_cpu) in EXPECTED.items():
        config = ClusterConfig.from_yaml_file(str(CONFIGS / name))
        assert (str(config.distributed_type).split(".")[-1], config.num_processes, config.use_cpu) == \
            (kind, processes, use_cpu), name
        assert f"--config_file scripts/accelerate/{name}" in readme, f"{name}: no command in the README"
        assert f"--config_file scripts/accelerate/{name}" in (CONFIGS / name).read_text(), name
    assert (CONFIGS / "fsdp.yaml").read_text().count("fsdp_version: 2") == 1


def _free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


@pytest.mark.slow
def test_two_process_cpu_config_trains_with_two_processes(tmp_path, toy_dataset):
    output = tmp_path / "ddp"
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "cpu-2-gloo.yaml"),
            "--main_process_port", str(_free_port()), str(REPO / "scripts" / "train.py"),
            "--config", str(SMOKE), "--output", str(output)]
    for value in (f"data.dataset={toy_dataset}", "data.max_users=null", "training.per_device_train_batch_size=4",
                  "training.num_train_epochs=2", "training.disable_tqdm=true"):
        argv += ["--set", value]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONSAFEPATH": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((output / "metrics.json").read_text())
    # gloo's rendezvous only completes when both processes join; each takes half of every global batch, so
    # 48 toy users at 4 per process make 6 steps an epoch instead of one process's 12
    assert metrics["train/world_size"] == 2
    assert metrics["train/global_step"] == 2 * 48 // (4 * 2)
    assert result.stdout.count("run folder:") == 1  # process 0 printed the summary, the other process did not
