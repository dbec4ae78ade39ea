"""Argument helpers shared by command modules."""

from __future__ import annotations

import argparse
import csv
from typing import Any

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
        if name in out:
            raise GridrunError(f"--flag {name} is given twice ({name}={out[name]} and {name}={value}): "
                               f"give each flag once")
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


def split_values(text: str) -> list[str]:
    """Split a command-line value list on commas; a quoted value keeps its commas: `"a,b",c` -> [a,b | c]."""
    row = next(csv.reader([text], skipinitialspace=True), [])
    return [v.strip() for v in row]


def parse_flag_option(option: str) -> tuple[str, Any]:
    """`nodes1=64,128,256` -> ("nodes1", ["64", "128", "256"]); `lr=loguniform(1e-5,1e-1)` -> ("lr", Range)."""
    from ..space import parse_range

    name, sep, values = option.partition("=")
    name = name.strip().lstrip("-").replace("-", "_")
    if not sep or not name or not values.strip():
        raise GridrunError(
            f"--flag {option!r} is not NAME=VALUES: write e.g. --flag nodes1=64,128,256 or "
            f"--flag lr=loguniform(1e-5,1e-1) (quote a string value that contains commas: --flag 'name=\"a,b\",c')"
        )
    r = parse_range(values)
    if r is not None:
        return name, r
    return name, split_values(values)


def parse_flag_options(options: list[str] | None) -> dict[str, list[str]]:
    """Every `--flag NAME=V1,V2` of a sweep; a flag given twice is an error (its values would be lost)."""
    out: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    for option in options or []:
        name, values = parse_flag_option(option)
        if name in out:
            merged = ",".join([texts[name], option.partition("=")[2].strip()])
            raise GridrunError(f"--flag {name} is given twice ({_short(name + '=' + texts[name])} and "
                               f"{_short(option.strip())}): give each flag once, with all its values: "
                               f"--flag {_short(name + '=' + merged)}")
        out[name], texts[name] = values, option.partition("=")[2].strip()
    return out


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_sample(text: str | float | int | None) -> float | int | None:
    """`"0.05"` -> 0.05, `"50"` -> 50, `"1"` -> 1 (all)."""
    if text is None or isinstance(text, (int, float)):
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise GridrunError(f"--sample {text!r} is not a number: give a fraction like 0.05 or a count like 50") from None


def parse_key_values(items: list[str] | None, option: str) -> dict[str, str]:
    """`--prune-opt grace=2` (repeatable) -> {"grace": "2"}: text values, typed by whoever takes them."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise GridrunError(f"{option} {item!r} is not KEY=VALUE: write it as {option} {key or 'KEY'}=VALUE")
        if key in out:
            raise GridrunError(f"{option} {key} is given twice ({key}={out[key]} and {key}={value}): give it once")
        out[key] = value.strip()
    return out
