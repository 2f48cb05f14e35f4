"""Bring your own data: the README's commands, exactly as written, on a generated CSV of (user, item, timestamp).

The commands are read from the README's "Bring your own data" section and run through the CLI's ``main`` in a folder
holding the CSV (named as in the README) and a link to ``scripts/`` (the README runs from the repository root).
"""

import json
import re
import shlex
from pathlib import Path

import pytest

from genrec.cli import main
from tests.conftest import write_interactions_csv

REPO = Path(__file__).resolve().parents[2]


def readme_byo_commands() -> list[list[str]]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Bring your own data", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def test_the_readme_commands_run_on_a_users_csv(tmp_path, monkeypatch, capsys):
    commands = readme_byo_commands()
    assert [command[:2] for command in commands] == [["genrec", "data"], ["mkdir", "-p"], ["genrec", "tokenize"],
                                                     ["genrec", "train"], ["genrec", "recommend"]]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scripts").symlink_to(REPO / "scripts")
    write_interactions_csv(tmp_path / "clicks.csv", num_users=60, num_items=40)

    outputs = []
    for command in commands:
        if command[0] == "mkdir":
            Path(command[2]).mkdir(parents=True, exist_ok=True)
            continue
        assert main(command[1:]) == 0, command
        outputs.append(capsys.readouterr().out)
    stats = outputs[0]
    assert re.search(r"num_users\s+60\b", stats) and re.search(r"num_items\s+40\b", stats)
    assert (tmp_path / "clicks-ids" / "config.json").is_file()
    run = tmp_path / "runs" / "clicks"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data/name"] == "clicks" and metrics["data/num_items"] == 40 and metrics["data/num_users"] == 60
    assert metrics["model/item_tokenizer"] == "collaborative"  # the ids genrec tokenize fitted, not the preset's
    checkpoint = json.loads((run / "checkpoint" / "config.json").read_text())
    assert checkpoint["item_tokenizer_method"] == "collaborative"
    codes = json.loads((tmp_path / "clicks-ids" / "config.json").read_text())["item_ids"]
    assert json.loads((run / "checkpoint" / "item_tokenizer" / "config.json").read_text())["item_ids"] == codes
    rows = [line.split() for line in outputs[3].strip().splitlines()]
    assert rows[0] == ["rank", "item_id", "score"] and len(rows) == 6  # -k 5, no titles in this catalog
    assert {row[1] for row in rows[1:]} <= {f"sku{k}" for k in range(40)} - {"sku1", "sku2"}


@pytest.mark.parametrize(("argv", "message"), [
    (["data", "stats", "{csv}"], r"no user column found among \['customer', 'product', 'when'\]; tried \[.*\] — "
                                 r"rename it to one of those or name it: --user-col"),
    (["data", "stats", "{csv}", "--user-col", "customer", "--item-col", "sku"],
     r"the item column 'sku' \(`item_col`\) is not a column; columns are \['customer', 'product', 'when'\]"),
    (["tokenize", "--dataset", "{csv}", "--method", "random", "--output", "{tmp}/ids", "--user-col", "customer",
      "--item-col", "product"], r"user 'x9' has 2 interaction\(s\); leave-one-out needs >= 3 .*"
                                r"`data.min_user_interactions: 3` \(genrec train\), --min-user-interactions 3"),
    (["train", "--config", "{repo}/scripts/configs/sasrec-beauty-smoke.yaml", "--output", "{tmp}/run",
      "--set", "data.dataset={csv}", "--set", "data.user_col=customer"], r"no item column found"),
])
def test_a_users_table_with_other_columns_gets_one_line_errors(tmp_path, capsys, argv, message):
    csv = write_interactions_csv(tmp_path / "log.csv", num_users=20, num_items=12, columns=("customer", "product", "when"))
    with open(csv, "a", encoding="utf-8") as handle:  # a customer with two events: too short for leave-one-out
        handle.write("x9,sku1,1\nx9,sku2,2\n")
    argv = [part.format(csv=csv, tmp=tmp_path, repo=REPO) for part in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(csv) in err, err
    assert re.search(message, err), err
    assert not (tmp_path / "ids").exists() and not (tmp_path / "run").exists()


def test_the_named_columns_and_kcore_filter_make_it_work(tmp_path, capsys):
    csv = write_interactions_csv(tmp_path / "log.csv", num_users=20, num_items=12, columns=("customer", "product", "when"))
    with open(csv, "a", encoding="utf-8") as handle:
        handle.write("x9,sku1,1\nx9,sku2,2\n")  # a customer with two events
    assert main(["data", "stats", csv, "--user-col", "customer", "--item-col", "product", "--time-col", "when",
                 "--min-user-interactions", "3", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["num_users"] == 20 and stats["users_below_3"] == 0
