"""The ``genrec`` console command.

Each subcommand lives in its own module exposing ``register(subparsers)``; the module adds its
parser and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit
code). ``genrec`` itself (``import genrec``) registers the configs with ``AutoConfig`` before this runs, which
imports torch but no model (see the README's Architecture section).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

# Normally already set by `import genrec` (before it loads torch): the default active OpenMP wait policy made small
# steps 30-40x slower on a busy 2-core machine (measured); passive waiting costs nothing when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# (module, subcommand names it registers). Add new subcommands here.
_SUBCOMMAND_MODULES = [
    "genrec.cli.data",
    "genrec.cli.train",
    "genrec.cli.evaluate",
    "genrec.cli.quickstart",
    "genrec.cli.tokenize",
    "genrec.cli.align",
    "genrec.cli.recommend",
    "genrec.cli.plot",
]


# Commands that load transformers' Trainer (and with it its W&B integration).
_TRAINER_COMMANDS = ("train", "evaluate", "quickstart", "align", "recommend")


def hide_wandb_offline_banner() -> None:
    """Import transformers' W&B integration with ``WANDB_MODE`` hidden.

    transformers prints "[INFO] Running in WANDB offline mode" at import whenever ``WANDB_MODE=offline``
    (CI sets it), even for a run with ``report_to: none``; with ``report_to: wandb`` W&B itself reports
    its mode. Nothing else in that module reads the variable at import.
    """
    mode = os.environ.pop("WANDB_MODE", None)
    try:
        import transformers.integrations.integration_utils  # noqa: F401
    finally:
        if mode is not None:
            os.environ["WANDB_MODE"] = mode


def positive_int(text: str) -> int:
    """``argparse`` type of the integer options that must be >= 1 (``-k``, ``--batch-size``, ``--ks``, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--checkpoint`` option of the commands that load a saved model (``evaluate``, ``recommend``)."""
    parser.add_argument("--checkpoint", required=True,
                        help="A save_pretrained folder, a run folder with checkpoint/, or a Hugging Face Hub repo id "
                             "owner/name[@revision].")


def existing_checkpoint(value: str | os.PathLike) -> Path:
    """``--checkpoint`` as a local path: one that exists, or the snapshot of a Hub repo id ``owner/name[@revision]``
    (:func:`genrec.utils.hub.resolve_folder`).

    Raises:
        FileNotFoundError: no such path and not a repo id, or the repo could not be downloaded (one line).
    """
    from genrec.utils.hub import resolve_folder

    return resolve_folder(value, what="--checkpoint")


def build_parser() -> argparse.ArgumentParser:
    from genrec import __version__

    parser = argparse.ArgumentParser(
        prog="genrec",
        description="Generative recommendation on the Hugging Face stack.",
    )
    parser.add_argument("--version", action="version", version=f"genrec {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        # Every listed module must import: a broken one is a bug and fails `genrec --help` loudly instead of
        # silently dropping its subcommand.
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    from genrec.utils.errors import run_command

    def body() -> int:
        if args.command in _TRAINER_COMMANDS:  # inside run_command: Ctrl-C during this slow import is one line too
            hide_wandb_offline_banner()
        return args.func(args)

    return run_command(f"genrec {args.command}", body)


if __name__ == "__main__":
    sys.exit(main())
