"""The `hgf` command line.

Each concern registers its own subcommands (`bridge.cli.checkpoints`: inspect, convert;
`bridge.cli.artifacts`: get, artifacts). Errors of bad input print one line, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

SUBCOMMAND_MODULES = ("bridge.cli.checkpoints", "bridge.cli.artifacts")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hgf",
        description="hgf-bridge: Hugging Face models for PyTorch and Julia. "
        "Inspect and convert checkpoints, fetch and manage files in the artifact store.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue  # not written yet
        module.register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run `hgf ARGS...`; returns the exit status (0 success, 1 bad input, 2 usage)."""
    from bridge.cli.terminal import printable
    from bridge.errors import BridgeError
    from pickle_io import PickleIOError

    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (BridgeError, PickleIOError, FileNotFoundError) as error:
        print(printable(f"hgf {args.command}: error: {error}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
