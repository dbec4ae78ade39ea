"""Typed flags for training scripts: declaration, parsing, precedence and errors.

    FLAGS = gridrun.flags(
        gridrun.flag_integer("nodes1", 256, "units in the first layer"),
        gridrun.flag_numeric("lr", 0.001, "learning rate"),
    )
    FLAGS = gridrun.flags(nodes1=256, optimizer="rmsprop")   # compact form, type from the default

Precedence, lowest to highest: defaults < flags.yml beside the script (a plain mapping, or profiles
selected with --config NAME / GRIDRUN_CONFIG) < the command line (--lr 0.01, --lr=0.01) < values passed
by `gridrun training-run` / `tuning-run`. The module is named flagspec so that `gridrun.flags` stays
the function (a submodule called flags would shadow it once imported).
"""

from __future__ import annotations

import ast
import difflib
import math
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import rundir
from .errors import FlagError, GridrunError

TYPES = ("numeric", "integer", "boolean", "string")
_TRUE = {"true", "yes", "y", "1", "on", "t"}
_FALSE = {"false", "no", "n", "0", "off", "f"}
ENV_CONFIG = "GRIDRUN_CONFIG"


@dataclass(frozen=True)
class FlagSpec:
    """One declared flag. `static` says how population mode treats it: None = by type (numeric flags
    are vectorized across trials, the others split trials into groups)."""

    name: str
    type: str
    default: Any
    description: str = ""
    static: bool | None = None
    values: Any = None  # search values for tuning runs: a tuple of values, or a space.Range
    # the flag applies only when each named flag has one of its values: (("layers", (3, 4)),);
    # given as when={"layers": [3, 4]} (checked against the other flags in gridrun.flags())
    when: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise FlagError(f"invalid flag name {self.name!r}: use a Python identifier such as 'learning_rate'")
        if self.type not in TYPES:
            raise FlagError(f"flag '{self.name}': unknown type {self.type!r}; use one of {', '.join(TYPES)}")
        if self.default is not None:
            object.__setattr__(self, "default", self.parse(self.default, source="its default"))
        if self.values is not None:
            object.__setattr__(self, "values", self._search_values(self.values))
        if self.when is not None:
            object.__setattr__(self, "when", _normal_when(self.name, self.when))

    def _search_values(self, values: Any) -> Any:
        from .space import Range

        if isinstance(values, Range):
            try:
                values.check_for(self.name, self.type)
            except GridrunError as exc:
                raise FlagError(str(exc)) from None
            return values
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise FlagError(f"flag '{self.name}': values= takes a list of values or a range such as "
                            f"gridrun.loguniform(1e-4, 1e-1), not {values!r}")
        typed = tuple(self.parse(v, source="its values=") for v in values)
        if not typed:
            raise FlagError(f"flag '{self.name}': values= is empty: give at least one value")
        return typed

    @property
    def conditions(self) -> dict[str, tuple[Any, ...]]:
        """`when=` as {other flag: the values for which this flag applies} ({} when it always applies)."""
        return dict(self.when or ())

    @property
    def is_static(self) -> bool:
        return self.type != "numeric" if self.static is None else bool(self.static)

    def parse(self, value: Any, source: str = "the value given") -> Any:
        """Convert `value` (a string from a command line, or a YAML/JSON/Python value) to this flag's type."""
        if value is None:
            return None
        try:
            return _CONVERT[self.type](value)
        except (ValueError, TypeError):
            pass
        example = {"numeric": "0.01", "integer": "64", "boolean": "true", "string": "adam"}[self.type]
        raise FlagError(
            f"flag '{self.name}' ({self.type}) cannot take {value!r} from {source}: "
            f"give {_ARTICLE[self.type]} {self.type} value, e.g. {_example(self.name, example, source)}"
        )


def _example(name: str, value: str, source: str) -> str:
    """A flag setting written the way that works where the bad value came from: `--lr 0.01` on the
    script's own command line (`python train.py`), `lr: 0.01` in a flags file, `lr=0.01` in a
    declaration, and `--flag lr=0.01` for gridrun's training-run / tuning-run."""
    if source == COMMAND_LINE:
        return f"--{name} {value}"
    if source.startswith("flags file"):
        return f"{name}: {value}"
    if source in ("its default", "its values="):
        return f"{name}={value}" if source == "its default" else f"values=[{value}]"
    return f"--flag {name}={value} (from Python: flags={{{name!r}: {value}}})"


COMMAND_LINE = "the command line"  # the source of flags from the script's own sys.argv


def _to_float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and v.strip():
        return float(v.strip())
    raise ValueError


def _to_int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if math.isfinite(v) and v.is_integer():
            return int(v)
        raise ValueError
    if isinstance(v, str):
        s = v.strip()
        try:
            return int(s)
        except ValueError:
            return _to_int(float(s))
    raise ValueError


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    raise ValueError


def _to_str(v: Any) -> str:
    if isinstance(v, (dict, list, tuple, set)):
        raise ValueError
    return v if isinstance(v, str) else str(v)


_ARTICLE = {"numeric": "a", "integer": "an", "boolean": "a", "string": "a"}
_CONVERT = {"numeric": _to_float, "integer": _to_int, "boolean": _to_bool, "string": _to_str}


def flag_numeric(name: str, default: float | None, description: str = "", static: bool | None = None,
             values: Any = None, when: Any = None) -> FlagSpec:
    return FlagSpec(name, "numeric", default, description, static, values, when)


def flag_integer(name: str, default: int | None, description: str = "", static: bool | None = None,
             values: Any = None, when: Any = None) -> FlagSpec:
    return FlagSpec(name, "integer", default, description, static, values, when)


def flag_boolean(name: str, default: bool | None, description: str = "", static: bool | None = None,
             values: Any = None, when: Any = None) -> FlagSpec:
    return FlagSpec(name, "boolean", default, description, static, values, when)


def flag_string(name: str, default: str | None, description: str = "", static: bool | None = None,
             values: Any = None, when: Any = None) -> FlagSpec:
    return FlagSpec(name, "string", default, description, static, values, when)


def _infer(name: str, default: Any) -> FlagSpec:
    if isinstance(default, FlagSpec):
        return default
    if isinstance(default, bool):
        return flag_boolean(name, default)
    if isinstance(default, int):
        return flag_integer(name, default)
    if isinstance(default, float):
        return flag_numeric(name, default)
    if isinstance(default, str):
        return flag_string(name, default)
    raise FlagError(
        f"flag '{name}': cannot infer a type from default {default!r}; "
        f"declare it with gridrun.flag_numeric/flag_integer/flag_boolean/flag_string"
    )


class Flags(Mapping[str, Any]):
    """The resolved flag values: `FLAGS.lr`, `FLAGS["lr"]`, `for name in FLAGS`, `FLAGS.as_dict()`."""

    def __init__(self, specs: dict[str, FlagSpec], values: dict[str, Any], sources: dict[str, str]):
        object.__setattr__(self, "_specs", specs)
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_sources", sources)

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(undeclared_message([name], list(values)))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("flags are read-only; pass new values on the command line or with --flag")

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(undeclared_message([name], list(self._values))) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Flags({inner})"

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    @property
    def specs(self) -> dict[str, FlagSpec]:
        return dict(self._specs)

    def applies(self, name: str) -> bool:
        """Whether flag `name` applies with these values (its when= holds); a flag that does not apply
        still has a value (its default, or what flags.yml or the command line gave)."""
        if name not in self._specs:
            raise FlagError(undeclared_message([name], list(self._specs)))
        return applies(self._specs, self._values)[name]

    def source(self, name: str) -> str:
        """Where a value came from: default, flags.yml, command line or runner."""
        return self._sources[name]


def undeclared_message(names: list[str], declared: list[str]) -> str:
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, declared, n=1, cutoff=0.5)
        parts.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    listed = ", ".join(declared) if declared else "(none)"
    return (
        f"the following flags were provided but not declared: {', '.join(parts)}. "
        f"Declared flags: {listed}. Fix the name, or declare the flag in the script's gridrun.flags(...)"
    )


def flags(
    *specs: FlagSpec,
    config: str | None = None,
    file: str | os.PathLike | None = None,
    arguments: list[str] | None = None,
    **keyword_defaults: Any,
) -> Flags:
    """Declare the script's flags and resolve their values (see the module docstring for precedence).

    `arguments` defaults to sys.argv[1:] (none in a Jupyter/IPython kernel, whose sys.argv is the
    kernel's own `-f kernel.json`); `file` to flags.yml beside the running script (in a kernel: in the
    working directory, the notebook's folder). With explicit
    `arguments` or under a gridrun runner, mistakes raise FlagError; a plain `python script.py` prints
    the message and exits with status 2 instead of a traceback.
    """
    ctx = rundir.current()
    explicit = arguments is not None
    try:
        resolved = _resolve(specs, keyword_defaults, config, file, arguments, ctx)
    except FlagError as exc:
        if explicit or ctx is not None:
            raise
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if isinstance(resolved, str):  # --help
        print(resolved)
        raise SystemExit(0)
    if ctx is not None:
        ctx.write_flags(resolved.as_dict())
        if any(s.when for s in resolved.specs.values()):  # the runs table shows NA for these
            on = applies(resolved.specs, resolved.as_dict())
            ctx.write_properties(flags_inactive=[n for n, ok in on.items() if not ok])
    return resolved


def _collect(specs: tuple[FlagSpec, ...], keyword_defaults: dict[str, Any]) -> dict[str, FlagSpec]:
    out: dict[str, FlagSpec] = {}
    items = [(s.name, s) for s in specs] + [(k, _infer(k, v)) for k, v in keyword_defaults.items()]
    for name, spec in items:
        if not isinstance(spec, FlagSpec):
            raise FlagError(f"gridrun.flags() takes flag_numeric(...)-style declarations, got {spec!r}")
        if name in out:
            raise FlagError(f"flag '{name}' is declared twice: keep one declaration")
        out[name] = spec
    check_conditions(out)
    return out


def _normal_when(name: str, when: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """`when={"layers": [3, 4], "act": "relu"}` -> (("layers", (3, 4)), ("act", ("relu",))), checked for form."""
    example = 'when={"layers": [3, 4]}'
    if not isinstance(when, Mapping) or not when:
        raise FlagError(f"flag '{name}': when= takes a mapping of another flag to the values for which "
                        f"'{name}' applies, e.g. {example}, not {when!r}")
    out = []
    for other, vals in when.items():
        if not isinstance(other, str) or not other.isidentifier():
            raise FlagError(f"flag '{name}': when= names flags by their names, e.g. {example}, not {other!r}")
        if other == name:
            raise FlagError(f"flag '{name}': when= names the flag itself: a flag cannot depend on its own value")
        vals = tuple(vals) if isinstance(vals, (list, tuple, set, frozenset)) else (vals,)
        if not vals:
            raise FlagError(f"flag '{name}': when={{{other!r}: []}} never holds: give at least one value of '{other}'")
        out.append((other, vals))
    return tuple(out)


def check_conditions(specs: Mapping[str, FlagSpec]) -> None:
    """Every `when=` names a declared flag and values that flag can take, and no flag depends on
    itself through others: one-line FlagErrors, raised where the flags are declared (and read
    statically before a sweep starts). The values are typed in place by the other flag's type."""
    for name, spec in specs.items():
        if not spec.when:
            continue
        typed = []
        for other, vals in spec.when:
            if other not in specs:
                close = difflib.get_close_matches(other, list(specs), n=1, cutoff=0.5)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise FlagError(f"flag '{name}': when= names '{other}'{hint}, which is not declared: "
                                f"use one of {', '.join(n for n in specs if n != name)}")
            parent = specs[other]
            vals = tuple(parent.parse(v, source=f"flag '{name}''s when=") for v in vals)
            from .space import Range

            if isinstance(parent.values, Range):
                raise FlagError(f"flag '{name}': when= conditions on '{other}', which draws from the range "
                                f"{parent.values}: condition on a flag with a list of values")
            allowed = list(parent.values) if parent.values is not None else None
            if parent.type == "boolean" and allowed is None:
                allowed = [True, False]
            if allowed is not None:
                outside = [v for v in vals if v not in allowed]
                if outside:
                    raise FlagError(f"flag '{name}': when= gives '{other}' the value {outside[0]!r}, which is not "
                                    f"one of its values ({', '.join(map(repr, allowed))}): fix the value")
            typed.append((other, vals))
        object.__setattr__(spec, "when", tuple(typed))
    cycle = _find_cycle({n: [o for o, _ in s.when or ()] for n, s in specs.items()})
    if cycle:
        raise FlagError(f"flags depend on each other in a cycle through when= ({' -> '.join(cycle)}): "
                        f"a flag can apply depending on another only if that one does not depend on it")


def _find_cycle(parents: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle of `parents` links, as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for p in parents.get(node, []):
            if state.get(p) == 1:
                return [*path[path.index(p):], p] if p in path else [node, p]
            if state.get(p) is None:
                found = visit(p, [*path, p])
                if found:
                    return found
        state[node] = 2
        return None

    for n in parents:
        if state.get(n) is None:
            found = visit(n, [n])
            if found:
                return found
    return None


def applies(specs: Mapping[str, FlagSpec], values: Mapping[str, Any]) -> dict[str, bool]:
    """Which flags apply given resolved `values`: a flag with when= applies when every flag it names
    applies and has one of the values listed."""
    out: dict[str, bool] = {}

    def check(name: str) -> bool:
        if name not in out:
            out[name] = True  # no cycles (checked at declaration); guards recursion all the same
            spec = specs[name]
            out[name] = all(o in specs and check(o) and values.get(o) in vals for o, vals in spec.when or ())
        return out[name]

    for name in specs:
        check(name)
    return out


def in_kernel() -> bool:
    """True inside a Jupyter/IPython kernel while sys.argv is still the kernel's own command line
    (`ipykernel_launcher -f kernel.json`). `%run script.py --lr 0.1` sets sys.argv to the script's:
    those are parsed as usual."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    argv = sys.argv[1:]
    return not argv or list(getattr(sys, "orig_argv", [])[-len(argv):]) == argv


def _script_dir(ctx: rundir.RunContext | None) -> Path:
    if ctx is not None and ctx.properties.get("script_path"):
        return Path(ctx.properties["script_path"]).parent
    if in_kernel():
        return Path.cwd()
    return Path(sys.argv[0]).resolve().parent if sys.argv and sys.argv[0] else Path.cwd()


def _resolve(specs, keyword_defaults, config, file, arguments, ctx) -> Flags | str:
    declared = _collect(specs, keyword_defaults)
    values = {name: s.default for name, s in declared.items()}
    sources = dict.fromkeys(declared, "default")
    if arguments is None and ctx is not None and isinstance(ctx.properties.get("script_args"), list):
        argv: list[str] = []  # started by gridrun: its flags come from the runner, sys.argv is the script's
    elif arguments is None:
        argv = [] if in_kernel() else list(sys.argv[1:])  # in a Jupyter kernel, sys.argv is the kernel's
    else:
        argv = list(arguments)
    cli, cli_config, want_help = parse_command_line(argv)
    if want_help:
        return help_text(declared)
    config = cli_config or config or os.environ.get(ENV_CONFIG) or None
    path = Path(file) if file is not None else _script_dir(ctx) / "flags.yml"
    for layer, source in (
        (read_flags_file(path, config, required=file is not None), f"flags file {path}"),
        (cli, COMMAND_LINE),
        (ctx.flags if ctx is not None else {}, "the runner"),
    ):
        unknown = [k for k in layer if k not in declared]
        if unknown:
            raise FlagError(undeclared_message(unknown, list(declared)) + f" (from {source})")
        for name, raw in layer.items():
            values[name] = declared[name].parse(raw, source)
            sources[name] = source
    return Flags(declared, values, sources)


def parse_command_line(argv: list[str]) -> tuple[dict[str, str], str | None, bool]:
    """Parse `--name value`, `--name=value` (and `--config NAME`, `--help`); '-' in names becomes '_'.

    Parsing stops at `--`: what follows belongs to the script (its own arguments), not to its flags.
    """
    out: dict[str, str] = {}
    config = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":  # the rest are the script's own arguments, not flags
            break
        if arg in ("-h", "--help"):
            return out, config, True
        if not arg.startswith("--") or len(arg) == 2:
            raise FlagError(f"unexpected argument {arg!r}: pass flags as --name value or --name=value")
        body = arg[2:]
        if "=" in body:
            name, value = body.split("=", 1)
        else:
            if i + 1 >= len(argv):
                raise FlagError(f"flag --{body} has no value: pass --{body} VALUE or --{body}=VALUE")
            name, value = body, argv[i + 1]
            i += 1
        name = name.replace("-", "_")
        if name == "config":
            config = value
        else:
            out[name] = value
        i += 1
    return out, config, False


def read_flags_file(path: Path, config: str | None, required: bool = False) -> dict[str, Any]:
    """Read flags.yml: a plain mapping, or profiles (a `default` mapping plus named ones) chosen by `config`."""
    if not path.exists():
        if required:
            raise FlagError(f"flags file {path} does not exist: check the path given as file=")
        if config:
            raise FlagError(f"profile '{config}' was asked for, but there is no flags file at {path}: create it")
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise FlagError(f"cannot read flags file {path}: {exc}. Fix its permissions or encoding") from None
    except yaml.YAMLError as exc:
        raise FlagError(f"flags file {path} is not valid YAML: {exc}. Fix the file (a mapping of flag: value)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FlagError(f"flags file {path} must hold a mapping of flag: value, not a {type(data).__name__}")
    # profiles: a `default:` mapping plus named ones, or (as tfruns allows) named mappings only
    profiled = isinstance(data.get("default"), dict) or all(isinstance(v, dict) for v in data.values())
    if not profiled:
        if config:
            raise FlagError(
                f"profile '{config}' was asked for, but {path} has no profiles: "
                f"add a 'default:' mapping and a '{config}:' mapping, or drop --config"
            )
        mapping = data
    else:
        if config and config != "default" and config not in data:
            names = ", ".join(k for k, v in data.items() if isinstance(v, dict))
            raise FlagError(f"unknown profile '{config}' in {path}; profiles there: {names}")
        mapping = dict(data.get("default") or {})
        if config and config != "default":
            if not isinstance(data[config], dict):
                raise FlagError(f"profile '{config}' in {path} must be a mapping of flag: value")
            mapping.update(data[config])
    for k, v in mapping.items():
        if isinstance(v, (dict, list)):
            raise FlagError(f"flag '{k}' in {path} has a non-scalar value {v!r}: flags take single values")
    return {str(k): v for k, v in mapping.items()}


def help_text(declared: dict[str, FlagSpec]) -> str:
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "script.py"
    lines = [f"usage: python {script} [--config PROFILE] [--NAME VALUE ...]", "", "flags:"]
    width = max((len(n) for n in declared), default=4) + 2
    for name, s in declared.items():
        cond = " and ".join(f"{o} in ({', '.join(map(repr, v))})" for o, v in s.when or ())
        lines.append(f"  --{name:<{width}} {s.type:<8} default: {s.default!r}  {s.description}".rstrip()
                     + (f" (applies only if {cond})" if cond else ""))
    lines.append("")
    lines.append("Values also come from flags.yml beside the script (or a profile of it), and from gridrun.")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Static discovery: the flags a script declares, read without running it.


def _check_call(declare: Any, pos: list[Any], kws: dict[str, Any], where: str) -> None:
    """A flag_*() call whose arguments do not fit its signature: one line naming them (not a TypeError)."""
    import inspect

    sig = inspect.signature(declare)
    try:
        sig.bind(*pos, **kws)
    except TypeError as exc:
        names = ", ".join(sig.parameters)
        unknown = [k for k in kws if k not in sig.parameters]
        problem = (f"{declare.__name__}() has no argument {', '.join(repr(k) for k in unknown)}" if unknown
                   else f"{declare.__name__}(): {exc}")
        raise FlagError(f"{where}: {problem}; its arguments are {names}: a range is values=gridrun.uniform(lo, hi) "
                        f"(or gridrun.loguniform, gridrun.randint), a list of values is values=[...]") from None


def declared_flags(script: str | os.PathLike) -> dict[str, FlagSpec]:
    """Find the `gridrun.flags(...)` declaration in a script's source and return its specs.

    Values are read without running the script: literals, simple constant expressions of them
    (`2**7`, `-1e-3`, `1 / 3`, `"relu" + "6"`) and module-level constants assigned once from such an
    expression (`UNITS = 128` ... `flag_integer("units", UNITS)`). Anything else (a function call, an
    import, a value computed at run time) raises FlagError saying how to fix it. Used by training and
    tuning runs to type and check every flag value before a trial starts.
    """
    path = Path(script)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except FileNotFoundError:
        raise FlagError(f"script {path} does not exist: check the path") from None
    except SyntaxError as exc:
        raise FlagError(f"script {path} has a syntax error at line {exc.lineno}: {exc.msg}") from None
    consts = _ConstantReader(tree, path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) == "flags":
            specs: list[FlagSpec] = []
            for arg in node.args:
                if not (isinstance(arg, ast.Call) and _call_name(arg) in _DECLARERS):
                    raise FlagError(f"{path}:{node.lineno}: gridrun.flags() arguments must be flag_*() calls")
                what = "a flag declaration"
                if arg.args and isinstance(arg.args[0], ast.Constant):
                    what = f"flag '{arg.args[0].value}'"
                pos = [consts.value(a, what) for a in arg.args]
                kws = {k.arg: consts.value(k.value, what) for k in arg.keywords}
                declare = _DECLARERS[_call_name(arg)]
                _check_call(declare, pos, kws, f"{path}:{arg.lineno}: {what}")
                specs.append(declare(*pos, **kws))
            kw = {}
            for k in node.keywords:
                if k.arg in ("config", "file", "arguments"):
                    continue
                if k.arg is None:
                    raise FlagError(f"{path}:{node.lineno}: gridrun.flags(**...) cannot be read without running the "
                                    f"script: declare each flag, e.g. gridrun.flags(nodes=64, lr=0.01)")
                kw[k.arg] = consts.value(k.value, f"flag '{k.arg}'")
            return _collect(tuple(specs), kw)
    return {}


_BINOPS: dict[type, Any] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}
_UNARY: dict[type, Any] = {ast.USub: lambda a: -a, ast.UAdd: lambda a: +a, ast.Not: lambda a: not a}


class _NotConstant(Exception):
    """A value that cannot be known without running the script (the node that is not constant)."""

    def __init__(self, node: ast.AST):
        super().__init__(node)
        self.node = node


class _ConstantReader:
    """Evaluate a flag declaration's values from a script's AST: literals, arithmetic on them, and
    module-level names assigned exactly once from such a value. Nothing is executed."""

    def __init__(self, tree: ast.Module, path: Path):
        self.path = path
        self.assigned: dict[str, list[ast.expr | None]] = {}
        for stmt in tree.body:
            targets: list[ast.expr] = []
            value: ast.expr | None = None
            if isinstance(stmt, ast.Assign):
                targets, value = stmt.targets, stmt.value
            elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
                targets, value = [stmt.target], stmt.value if isinstance(stmt, ast.AnnAssign) else None
            elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
                for alias in stmt.names:
                    self.assigned.setdefault((alias.asname or alias.name).split(".")[0], []).append(None)
            for target in targets:
                if isinstance(target, ast.Name):
                    self.assigned.setdefault(target.id, []).append(value)
                else:  # a, b = ... : not read
                    for n in ast.walk(target):
                        if isinstance(n, ast.Name):
                            self.assigned.setdefault(n.id, []).append(None)

    def value(self, node: ast.expr, what: str) -> Any:
        try:
            return self._eval(node, ())
        except _NotConstant as exc:
            bad = ast.unparse(exc.node)
            raise FlagError(
                f"{self.path}:{node.lineno}: {what} uses `{bad}`, which gridrun cannot read without running the "
                f"script: write its default as a literal (128, 1e-3, 'adam'), a simple expression of literals "
                f"(2**7, -1e-3) or a module-level constant assigned once from one (UNITS = 128), and set other "
                f"values with --flag or flags.yml"
            ) from None

    def _eval(self, node: ast.expr, seen: tuple[str, ...]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return self._apply(_UNARY[type(node.op)], node, self._eval(node.operand, seen))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = self._eval(node.left, seen), self._eval(node.right, seen)
            big = isinstance(node.op, ast.Pow) and isinstance(right, (int, float)) and abs(right) > 1024
            if big or (isinstance(node.op, ast.Mult) and str in (type(left), type(right))):
                raise _NotConstant(node)  # no huge numbers or strings from a declaration
            return self._apply(_BINOPS[type(node.op)], node, left, right)
        if isinstance(node, ast.Name) and node.id not in seen:
            values = self.assigned.get(node.id, [])
            if len(values) == 1 and values[0] is not None:
                return self._eval(values[0], (*seen, node.id))
        if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):  # when={"layers": [3, 4]}
            return {self._eval(k, seen): self._eval(v, seen) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
        if isinstance(node, (ast.List, ast.Tuple)):  # values=[64, 128, 256]
            return [self._eval(e, seen) for e in node.elts]
        if isinstance(node, ast.Call) and _call_name(node) in _RANGES:  # values=gridrun.loguniform(1e-4, 1e-1)
            from . import space

            args = [self._eval(a, seen) for a in node.args]
            kwargs = {k.arg: self._eval(k.value, seen) for k in node.keywords if k.arg}
            try:
                return getattr(space, _call_name(node))(*args, **kwargs)
            except TypeError:
                raise _NotConstant(node) from None
        raise _NotConstant(node)

    @staticmethod
    def _apply(fn: Any, node: ast.expr, *args: Any) -> Any:
        if not all(isinstance(a, (int, float, str, bool)) or a is None for a in args):
            raise _NotConstant(node)
        try:
            return fn(*args)
        except (TypeError, ValueError, ArithmeticError):
            raise _NotConstant(node) from None


_RANGES = ("uniform", "loguniform", "randint")


def _call_name(node: ast.Call) -> str | None:
    f = node.func
    if isinstance(f, ast.Attribute):
        return f.attr
    if isinstance(f, ast.Name):
        return f.id
    return None


_DECLARERS = {
    "flag_numeric": flag_numeric,
    "flag_integer": flag_integer,
    "flag_boolean": flag_boolean,
    "flag_string": flag_string,
}
