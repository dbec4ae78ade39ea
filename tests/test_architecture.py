"""The layering of docs/architecture.md holds: the import contracts in pyproject.toml pass `lint-imports`,
and a deliberately violating import (a lazy one, inside a function) makes them fail, so the check cannot
pass by reading nothing."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` over the gridrun package found under `root` (and not the installed one)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_import_contracts_hold():
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in out.stdout, out.stdout
    for contract in CONTRACTS:
        assert " ".join(contract["name"].split()) in " ".join(out.stdout.split())


def test_architecture_doc_names_every_contract():
    """docs/architecture.md states the layers the contracts check, in the same order."""
    layers = next(c for c in CONTRACTS if c["type"] == "layers")["layers"]
    doc = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```\n(cli .*?)```", doc, re.S)
    assert block, "docs/architecture.md has no layers block starting with `cli`"
    assert [" ".join(line.split()) for line in block.group(1).strip().splitlines()] == layers


@pytest.fixture
def copy_of_package(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "gridrun", tmp_path / "gridrun", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


VIOLATIONS = [
    # (module, a lazy import it must not make, the contract that breaks)
    ("errors.py", "from .sweep import tuning_run", "Layers"),
    ("rundir.py", "from .runs import ls_runs", "Layers"),
    ("executors/base.py", "from ..runs import ls_runs", "Executors know nothing"),
    ("report/charts.py", "from ..train import fit", "Reports are built from run dirs"),
    ("sweep/state.py", "from ..executors import get_executor", "The sweep's state"),
    ("record.py", "import jax", "Declaring flags"),
]


def broken_contracts(stdout: str) -> list[str]:
    """The names of the contracts the report marks BROKEN (a long name wraps over lines)."""
    summary = " ".join(stdout.split("Contracts:")[0].split())
    return [c["name"] for c in CONTRACTS if f"{' '.join(c['name'].split())} BROKEN" in summary]


@pytest.mark.parametrize(("module", "statement", "contract"), VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_a_violating_import_breaks_its_contract(copy_of_package: Path, module: str, statement: str,
                                                contract: str):
    path = copy_of_package / "gridrun" / module
    path.write_text(path.read_text() + f"\n\ndef _violation():\n    {statement}  # noqa\n")
    out = lint_imports(copy_of_package)
    assert out.returncode != 0, out.stdout
    broken = broken_contracts(out.stdout)
    assert [name for name in broken if name.startswith(contract)], out.stdout
    dotted = "gridrun." + module.removesuffix(".py").replace("/", ".")
    assert f"{dotted} -> " in out.stdout.split("Broken contracts")[1], out.stdout


# ---------------------------------------------------------------------------------------------------
# The public names: every lazily loaded name is also imported for type checkers, and resolves


def _init_names() -> tuple[dict[str, str], dict[str, str]]:
    """(_API: name -> module, the TYPE_CHECKING block's imports: name -> module), read from the source."""
    import ast

    tree = ast.parse((ROOT / "gridrun" / "__init__.py").read_text())
    api: dict[str, str] = {}
    typed: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "_API":
            api = ast.literal_eval(node.value)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.level == 1, ast.unparse(stmt)
                for alias in stmt.names:
                    typed[alias.asname or alias.name] = stmt.module or alias.name
    return api, typed


def test_every_lazy_name_is_visible_to_type_checkers():
    api, typed = _init_names()
    assert api, "gridrun/__init__.py has no _API dict"
    expected = {**api, "datasets": "datasets"}
    missing = sorted(set(expected) - set(typed))
    extra = sorted(set(typed) - set(expected))
    assert not missing and not extra, f"TYPE_CHECKING block: missing {missing}, not in _API {extra}"
    wrong = {n: (typed[n], expected[n]) for n in expected if typed[n] != expected[n]}
    assert not wrong, f"imported from another module than _API names (typed, _API): {wrong}"


def test_every_lazy_name_resolves():
    import gridrun

    api, _ = _init_names()
    assert sorted(gridrun.__all__) == sorted([*api, "datasets", "__version__"])
    for name, module in api.items():
        value = getattr(gridrun, name)
        assert value is getattr(importlib.import_module(f"gridrun.{module}"), name), name
    assert gridrun.datasets is importlib.import_module("gridrun.datasets")
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        gridrun.not_a_name  # noqa: B018
