"""The README's CLI reference is the CLI's own help text, for `hgf` and every subcommand.

If a help text changes, regenerate the section with `UPDATE_README=1 pytest tests/test_readme.py`
and review the diff.
"""

import argparse
import os
import re
from pathlib import Path

from bridge.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def command_parsers(parser, words):
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield from command_parsers(subparser, words + [name])


def rendered_reference() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal width
    blocks = []
    for words, parser in command_parsers(build_parser(), ["hgf"]):
        blocks.append(f"### `{' '.join(words)}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
    return "\n".join(blocks)


def test_readme_cli_reference_matches_help_texts():
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text, "README lacks the CLI reference markers"
    expected = f"{START}\n{rendered_reference()}{END}"
    if os.environ.get("UPDATE_README"):
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: expected, text, flags=re.S)
        README.write_text(text, encoding="utf-8")
    current = re.search(re.escape(START) + ".*?" + re.escape(END), text, flags=re.S).group(0)
    assert current == expected


def test_every_subcommand_is_in_the_reference():
    words = [" ".join(w) for w, _ in command_parsers(build_parser(), ["hgf"])]
    assert {"hgf inspect", "hgf convert", "hgf get", "hgf artifacts gc"} <= set(words)
