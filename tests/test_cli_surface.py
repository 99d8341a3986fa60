"""The CLI surface is pinned: every subcommand with its positionals and flags (choices, defaults,
hidden aliases) is listed in tests/golden/cli_surface.txt. A flag that appears, disappears or changes
fails here until the listing is updated on purpose (``pytest tests/test_cli_surface.py --update-golden``)
and the README's tour follows it."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator

from fm4npp.cli.main import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _describe(action: argparse.Action) -> str:
    name = ", ".join(action.option_strings) or f"<{action.metavar or action.dest}>"
    parts = [name]
    if action.nargs not in (None, 0):
        parts.append(f"nargs={action.nargs}")
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        parts.append("choices=" + "|".join(map(str, action.choices)))
    if action.required and action.option_strings:
        parts.append("required")
    if isinstance(action, argparse._AppendAction):
        parts.append("repeatable")
    elif (
        action.default is not None
        and action.default is not False
        and action.default != argparse.SUPPRESS
    ):
        parts.append(f"default={action.default}")
    if action.help == argparse.SUPPRESS:
        parts.append("hidden")
    return " ".join(parts)


def _walk(parser: argparse.ArgumentParser, prefix: str) -> Iterator[str]:
    for name, sub in sorted(_subparsers(parser).items()):
        command = f"{prefix} {name}".strip()
        yield command
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            yield f"  {_describe(action)}"
        yield from _walk(sub, command)


def surface() -> str:
    return "\n".join(_walk(build_parser(), "")) + "\n"


def test_no_new_cli_options(golden: Callable[[str, str], None]) -> None:
    golden("cli_surface.txt", surface())


def test_every_command_is_listed_once() -> None:
    commands = [line for line in surface().splitlines() if not line.startswith(" ")]
    assert len(commands) == len(set(commands))
    for expected in (
        "plan",
        "submit",
        "status",
        "cancel",
        "logs",
        "fit-laws",
        "report",
        "evaluate",
        "train",
        "quickstart",
        "score-tracks",
        "data",
        "data generate",
    ):
        assert expected in commands
