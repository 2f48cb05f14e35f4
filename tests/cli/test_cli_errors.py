"""The CLI reports user errors in one line and nothing else: a broken subcommand or a library bug keeps its
traceback."""

import pytest

import genrec.cli
from genrec.cli import build_parser, main
from genrec.utils.errors import run_command


def test_a_subcommand_module_that_fails_to_import_is_an_error_not_a_missing_command(monkeypatch):
    monkeypatch.setattr(genrec.cli, "_SUBCOMMAND_MODULES", [*genrec.cli._SUBCOMMAND_MODULES, "genrec.cli.no_such"])
    with pytest.raises(ModuleNotFoundError, match="genrec.cli.no_such"):
        build_parser()
    with pytest.raises(ModuleNotFoundError, match="genrec.cli.no_such"):
        main(["--help"])


def test_every_listed_subcommand_is_registered():
    for command in ("data", "train", "evaluate", "quickstart", "tokenize", "align"):
        with pytest.raises(SystemExit) as exit_info:  # `genrec COMMAND --help` exists (0), an unknown one is 2
            build_parser().parse_args([command, "--help"])
        assert exit_info.value.code == 0, command


def test_a_key_error_from_library_code_keeps_its_traceback(capsys):
    def body():
        return {}["missing"]  # a bug inside genrec, not bad input

    with pytest.raises(KeyError, match="missing"):
        run_command("genrec test", body)
    assert capsys.readouterr().err == ""


def test_a_value_error_is_one_line_and_exit_status_2(capsys):
    def body():
        raise ValueError("`training.learning_rate` (-1) must be > 0\n(see the config)")

    assert run_command("genrec test", body) == 2
    assert capsys.readouterr().err == "genrec test: error: `training.learning_rate` (-1) must be > 0 (see the config)\n"
