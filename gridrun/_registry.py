"""Named plug-ins (samplers, pruners, executors): gridrun's own, plus those other packages declare.

A package adds one by an entry point in its pyproject.toml, discovered when a name is looked up:

    [project.entry-points."gridrun.pruners"]
    patient = "mypkg.pruners:PatientPruner"

A name resolves to a factory (usually a class); its keyword parameters are the options a user may
set (`--prune-opt KEY=VALUE`, `prune_options={...}`), and text values from the command line are typed
by the factory's signature. A registry is also the lazy `choices` of its command-line option: entry
points are only read when a name is checked or `--help` is shown. This module imports nothing from
gridrun but its errors, so that every layer (executors included) may use it.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .errors import GridrunError

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class Registry:
    """Names -> factories: `builtins` first, then the entry points of `group`."""

    def __init__(self, kind: str, group: str, option: str, builtins: Mapping[str, Callable[..., Any]],
                 skip: tuple[str, ...] = ()) -> None:
        self.kind, self.group, self.option = kind, group, option  # option: e.g. "--prune"
        self.builtins = dict(builtins)
        self.skip = skip  # factory parameters the sweep itself passes (not options)

    def entry_points(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=self.group) if ep.name not in self.builtins}

    def names(self) -> list[str]:
        return list(self.builtins) + sorted(self.entry_points())

    def __iter__(self) -> Iterator[str]:  # argparse `choices`, and the usage line of --help
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self.builtins or name in self.entry_points())

    def get(self, name: str) -> Callable[..., Any]:
        """The factory named `name` (an entry point is loaded now)."""
        if name in self.builtins:
            return self.builtins[name]
        ep = self.entry_points().get(name)
        if ep is None:
            names = self.names()
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise GridrunError(f"unknown {self.kind} {name!r}{hint}: use one of {', '.join(names)} "
                               f"(or install a package that registers it under the entry point group {self.group})")
        try:
            return ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plug-in: say which, in one line
            raise GridrunError(f"{self.kind} {name!r} (entry point {ep.value} of group {self.group}) could not be "
                               f"loaded: {type(exc).__name__}: {exc}") from None

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """The options `name` takes: its factory's keyword parameters, less those the sweep passes."""
        factory = self.get(name)
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            return {}
        return {k: p for k, p in params.items() if k not in self.skip and k != "self"
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def options(self, name: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """`given` checked against `name`'s parameters, text values typed by their annotations."""
        if not given:
            return {}
        params = self.parameters(name)
        factory = self.get(name)
        try:
            hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
        except Exception:  # noqa: BLE001 - unresolvable annotations: type values by their defaults
            hints = {}
        out: dict[str, Any] = {}
        for key, value in given.items():
            key = str(key).replace("-", "_")
            if key not in params:
                accepted = ", ".join(params) or "no options"
                raise GridrunError(f"{self.option}-opt {key}: {self.kind} {name!r} takes {accepted}")
            out[key] = typed(value, hints.get(key), params[key].default, f"{self.option}-opt {key}")
        return out

    def create(self, name: str, options: Mapping[str, Any] | None = None, **fixed: Any) -> Any:
        """The plug-in `name` built with `options` (checked and typed) and the sweep's own `fixed` arguments."""
        return self.get(name)(**fixed, **self.options(name, options))

    def help(self) -> str:
        """The names, comma-separated (for --help)."""
        return ", ".join(self.names())


def typed(value: Any, hint: Any, default: Any, what: str) -> Any:
    """A command-line text `value` as the type `hint` (or the default's type) names; other values as given."""
    if not isinstance(value, str):
        return value
    kinds = _kinds(hint) if hint is not None else ()
    if not kinds and default is not inspect.Parameter.empty and default is not None:
        kinds = (type(default),)
    if value.lower() in ("none", "null") and (type(None) in kinds or default is None):
        return None
    for kind in [k for k in (bool, int, float, str) if k in kinds] or ([] if kinds else [int, float, str]):
        try:
            if kind is bool:
                low = value.lower()
                if low in _TRUE or low in _FALSE:
                    return low in _TRUE
                continue
            return kind(value)
        except ValueError:
            continue
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    wanted = " or ".join(words.get(k, getattr(k, "__name__", str(k))) for k in kinds if k is not type(None))
    raise GridrunError(f"{what}={value!r} is not {wanted}: give e.g. {what}={_example(kinds)}")


def _kinds(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(hint))
    return (hint,)


def _example(kinds: tuple[Any, ...]) -> str:
    for k, ex in ((bool, "true"), (int, "3"), (float, "0.5")):
        if k in kinds:
            return ex
    return "VALUE"
