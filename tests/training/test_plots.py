"""``genrec plot``: the training-curve and expert-load PNGs of a run folder."""

import json
import struct

import numpy as np
import pytest

from genrec.cli import main
from genrec.training.plots import expert_load_matrix, plot_run


def _png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", header[16:24])


def _write_run(folder, *, moe: bool):
    folder.mkdir()
    history = []
    for step in range(5, 55, 5):
        record = {"loss": 3.0 / step ** 0.3, "learning_rate": 1e-3, "epoch": step / 10, "step": step}
        if moe:  # layer 0 balanced, layer 1 skewed towards expert 2
            record.update({"moe/aux_loss": 0.02, "moe/load_max": 2.0, "moe/load_min": 0.4})
            record.update({f"moe/load/layer0/expert{j}": 0.25 for j in range(4)})
            record.update({f"moe/load/layer1/expert{j}": share for j, share in enumerate([0.1, 0.2, 0.5, 0.2])})
        history.append(record)
        if step % 10 == 0:
            history.append({"eval_ndcg@10": 0.01 * step ** 0.5, "eval_runtime": 0.5, "epoch": step / 10, "step": step})
    (folder / "log_history.json").write_text(json.dumps(history))
    metrics = {"model/type": "onerec" if moe else "sasrec", "data/name": "toy",
               "curve/valid/ndcg@10": [[0.1 * i, 0.01 * (10 * i) ** 0.5] for i in range(1, 6)],
               "curve/eval_at_minutes": [0.2, 0.4]}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return history


def test_expert_load_matrix_is_the_mean_share_times_the_number_of_experts(tmp_path):
    history = _write_run(tmp_path / "run", moe=True)
    matrix = expert_load_matrix(history)
    np.testing.assert_allclose(matrix, [[1.0, 1.0, 1.0, 1.0], [0.4, 0.8, 2.0, 0.8]])
    assert expert_load_matrix([{"loss": 1.0, "step": 1}]) is None


def test_plot_run_writes_readable_pngs(tmp_path, capsys):
    _write_run(tmp_path / "moe", moe=True)
    assert main(["plot", str(tmp_path / "moe")]) == 0
    printed = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[-1] for p in printed] == ["training_curve.png", "expert_load.png"]
    width, height = _png_size(tmp_path / "moe" / "plots" / "training_curve.png")
    assert width > 1200 and 300 < height < 700  # three panels side by side
    assert _png_size(tmp_path / "moe" / "plots" / "expert_load.png")[0] > 600
    _write_run(tmp_path / "dense", moe=False)  # no MoE keys: no expert-load figure
    written = plot_run(tmp_path / "dense", tmp_path / "figures")
    assert [path.name for path in written] == ["training_curve.png"] and (tmp_path / "figures").is_dir()


@pytest.mark.parametrize("content, message", [(None, "no log_history.json"), ("{oops", "not valid JSON")])
def test_plot_errors_are_one_line(tmp_path, capsys, content, message):
    folder = tmp_path / "run"
    folder.mkdir()
    if content is not None:
        (folder / "log_history.json").write_text(content)
    assert main(["plot", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("genrec plot: error:")
