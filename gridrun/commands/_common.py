"""Argument helpers shared by command modules."""

from __future__ import annotations

import argparse

from .._io import ask_yes_no
from ..errors import GridrunError


def add_runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", default="runs", metavar="DIR", help="folder of run directories (default: runs)")


def parse_flag_assignments(items: list[str] | None) -> dict[str, str]:
    """`--flag name=value` (repeatable) -> {name: value}; values stay strings, typed later by the script."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise GridrunError(f"--flag {item!r} is not NAME=VALUE: write it as --flag {item}=VALUE")
        name, value = item.split("=", 1)
        name = name.strip().replace("-", "_")
        if not name:
            raise GridrunError(f"--flag {item!r} has no name: write it as --flag NAME=VALUE")
        out[name] = value
    return out


def confirm(question: str, assume_yes: bool) -> bool:
    """Ask a yes/no question; without a terminal, refuse unless --yes was given."""
    if assume_yes:
        return True
    answer = ask_yes_no(question, default=False)
    if answer is None:
        raise GridrunError(f"{question} needs confirmation, and there is no terminal to ask: add --yes")
    return answer
