import json
import re
import subprocess
import sys

import pytest

import gridrun
from gridrun.errors import FlagError
from gridrun.flagspec import declared_flags
from gridrun.rundir import RunContext, activate


def declare(arguments=(), file=None, **kw):
    return gridrun.flags(
        gridrun.flag_numeric("lr", 0.001, "learning rate"),
        gridrun.flag_integer("nodes1", 256, "units"),
        gridrun.flag_boolean("bn", True, "batch norm"),
        gridrun.flag_string("optimizer", "rmsprop", "optimizer"),
        arguments=list(arguments), file=file, **kw,
    )


def test_defaults_and_access(tmp_path):
    f = declare()
    assert f.lr == 0.001 and f["nodes1"] == 256 and f.bn is True and f.optimizer == "rmsprop"
    assert list(f) == ["lr", "nodes1", "bn", "optimizer"]
    assert f.as_dict() == {"lr": 0.001, "nodes1": 256, "bn": True, "optimizer": "rmsprop"}
    assert isinstance(f.nodes1, int) and isinstance(f.lr, float)
    with pytest.raises(AttributeError):
        f.lr = 3


def test_keyword_form_infers_types():
    f = gridrun.flags(nodes1=256, dropout=0.4, optimizer="adam", bn=False, arguments=["--nodes1", "64", "--bn", "yes"])
    assert f.nodes1 == 64 and f.bn is True and f.dropout == 0.4
    assert f.specs["nodes1"].type == "integer" and f.specs["dropout"].type == "numeric"
    assert f.specs["optimizer"].type == "string" and f.specs["bn"].type == "boolean"


@pytest.mark.parametrize("text,expected", [("true", True), ("False", False), ("yes", True), ("no", False),
                                           ("1", True), ("0", False)])
def test_booleans(text, expected):
    assert gridrun.flags(bn=False, arguments=[f"--bn={text}"]).bn is expected


def test_command_line_forms_and_dashes():
    f = gridrun.flags(learning_rate=0.1, nodes=3, arguments=["--learning-rate", "2e-5", "--nodes=7"])
    assert f.learning_rate == 2e-5 and f.nodes == 7


def test_precedence_defaults_file_cli_runner(tmp_path):
    yml = tmp_path / "flags.yml"
    yml.write_text("lr: 0.5\nnodes1: 32\noptimizer: adam\n")
    f = declare(file=yml)
    assert (f.lr, f.nodes1, f.optimizer, f.bn) == (0.5, 32, "adam", True)
    assert f.source("lr").startswith("flags file") and f.source("bn") == "default"
    f = declare(["--nodes1", "64"], file=yml)
    assert (f.lr, f.nodes1) == (0.5, 64) and f.source("nodes1") == "the command line"
    ctx = RunContext(run_dir=tmp_path, flags={"nodes1": "128", "lr": 1e-5})
    with activate(ctx):
        f = declare(["--nodes1", "64"], file=yml)
    assert (f.lr, f.nodes1) == (1e-5, 128) and f.source("nodes1") == "the runner"
    assert json.loads((tmp_path / "flags.json").read_text())["nodes1"] == 128


def test_profiles(tmp_path, monkeypatch):
    yml = tmp_path / "flags.yml"
    yml.write_text("default:\n  lr: 0.1\n  nodes1: 16\nbig:\n  nodes1: 512\n")
    assert declare(file=yml).nodes1 == 16
    f = declare(["--config", "big"], file=yml)
    assert (f.nodes1, f.lr) == (512, 0.1)
    monkeypatch.setenv("GRIDRUN_CONFIG", "big")
    assert declare(file=yml).nodes1 == 512
    with pytest.raises(FlagError, match="unknown profile 'huge'.*big"):
        declare(["--config", "huge"], file=yml)


def test_float_precision_round_trips_through_flags_json(tmp_path):
    for value in (1e-5, 2e-5, 0.1 + 0.2, 1.0000000000000002):
        ctx = RunContext(run_dir=tmp_path, flags={"lr": value})
        with activate(ctx):
            declare()
        assert json.loads((tmp_path / "flags.json").read_text())["lr"] == value


@pytest.mark.parametrize("args,pattern", [
    (["--lrr", "0.1"], r"'lrr' \(did you mean 'lr'\?\).*Declared flags: lr, nodes1, bn, optimizer"),
    (["--nodes1", "abc"], r"flag 'nodes1' \(integer\) cannot take 'abc' from the command line: give an integer "
                          r"value, e.g. --nodes1 64$"),  # the syntax of `python train.py`, not training-run's
    (["--nodes1", "3.5"], r"cannot take '3.5'"),
    (["--lr", "fast"], r"flag 'lr' \(numeric\) cannot take 'fast'"),
    (["--bn", "maybe"], r"flag 'bn' \(boolean\) cannot take 'maybe'"),
    (["--lr"], r"flag --lr has no value"),
    (["positional"], r"unexpected argument 'positional'"),
])
def test_command_line_errors(args, pattern):
    with pytest.raises(FlagError, match=pattern):
        declare(args)


def test_declared_twice():
    with pytest.raises(FlagError, match="'lr' is declared twice"):
        gridrun.flags(gridrun.flag_numeric("lr", 0.1), lr=0.2, arguments=[])


@pytest.mark.parametrize("content,pattern", [
    ("lr: [0.1\n", "not valid YAML"),
    ("- 1\n- 2\n", "must hold a mapping"),
    ("lr: [0.1, 0.2]\n", "non-scalar value"),
    ("lrate: 0.1\n", r"'lrate' \(did you mean 'lr'\?\).*from flags file"),
    ("nodes1: many\n", r"flag 'nodes1' \(integer\) cannot take 'many' from flags file .*e\.g\. nodes1: 64$"),
])
def test_bad_flags_file(tmp_path, content, pattern):
    yml = tmp_path / "flags.yml"
    yml.write_text(content)
    with pytest.raises(FlagError, match=pattern):
        declare(file=yml)


def test_profile_requested_without_profiles(tmp_path):
    yml = tmp_path / "flags.yml"
    yml.write_text("lr: 0.1\n")
    with pytest.raises(FlagError, match="has no profiles"):
        declare(["--config", "big"], file=yml)


def test_runner_value_of_wrong_type(tmp_path):
    with activate(RunContext(run_dir=tmp_path, flags={"nodes1": "wide"})):
        with pytest.raises(FlagError, match="from the runner"):
            declare()


def script(tmp_path, body="print(FLAGS.as_dict())"):
    path = tmp_path / "train.py"
    path.write_text(
        "import gridrun\n"
        "FLAGS = gridrun.flags(gridrun.flag_numeric('lr', 0.01, 'the learning rate'), nodes=8)\n" + body + "\n"
    )
    return path


def test_plain_python_run_help_and_errors(tmp_path):
    path = script(tmp_path)
    (tmp_path / "flags.yml").write_text("nodes: 16\n")
    out = subprocess.run([sys.executable, str(path), "--lr", "0.5"], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0 and "{'lr': 0.5, 'nodes': 16}" in out.stdout
    assert not (tmp_path / "runs").exists()  # plain python: no run dir
    out = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--lr" in out.stdout and "the learning rate" in out.stdout and "numeric" in out.stdout
    out = subprocess.run([sys.executable, str(path), "--nodez", "3"], capture_output=True, text=True)
    assert out.returncode == 2 and "did you mean 'nodes'" in out.stderr and "Traceback" not in out.stderr


def test_declared_flags_reads_source_without_running(tmp_path):
    path = script(tmp_path, body="raise SystemExit('must not run')")
    specs = declared_flags(path)
    assert {k: (s.type, s.default) for k, s in specs.items()} == {"lr": ("numeric", 0.01), "nodes": ("integer", 8)}
    assert specs["lr"].description == "the learning rate"
    assert specs["nodes"].is_static and not specs["lr"].is_static
    bad = tmp_path / "bad.py"
    bad.write_text("import gridrun, os\nFLAGS = gridrun.flags(gridrun.flag_numeric('lr', float(os.environ['LR'])))\n")
    with pytest.raises(FlagError, match=r"bad.py:2: flag 'lr' uses `float\(os.environ\['LR'\]\)`, which gridrun "
                                        r"cannot read without running the script: write its default as a literal"):
        declared_flags(bad)
    bad.write_text("import gridrun\nFLAGS = gridrun.flags(\n    gridrun.flag_numeric('lr', 0.1, range=(0, 1)))\n")
    with pytest.raises(FlagError, match=r"bad.py:3: flag 'lr': flag_numeric\(\) has no argument 'range'; its arguments "
                                        r"are name, default, description, static, values, when: a range is "
                                        r"values=gridrun.uniform"):
        declared_flags(bad)  # (a TypeError with a traceback before)


def test_declared_flags_evaluates_constant_expressions_and_module_constants(tmp_path):
    """Issue 12 item 4: defaults that plain python accepts (2**7, -1e-3, a module constant) are read."""
    path = tmp_path / "train.py"
    path.write_text(
        "import gridrun\n"
        "UNITS = 2**7\n"
        "LR: float = -1e-3\n"
        "ACT = 're' + 'lu'\n"
        "FLAGS = gridrun.flags(gridrun.flag_integer('units', UNITS, 'units'), gridrun.flag_numeric('lr', LR / 2),\n"
        "                      act=ACT, frac=1 / 4, off=not True, big=10**3)\n"
        "print(FLAGS.as_dict())\n"
    )
    specs = declared_flags(path)
    assert {k: (s.type, s.default) for k, s in specs.items()} == {
        "units": ("integer", 128), "lr": ("numeric", -5e-4), "act": ("string", "relu"), "frac": ("numeric", 0.25),
        "off": ("boolean", False), "big": ("integer", 1000)}
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True)  # plain python agrees
    assert "'units': 128, 'lr': -0.0005, 'act': 'relu', 'frac': 0.25, 'off': False, 'big': 1000" in out.stdout
    for bad, shown in [("N = 1\nN = 2\n", "N"), ("N = len('ab')\n", "len('ab')"), ("from cfg import N\n", "N"),
                       ("N = 10**100000\n", "10 ** 100000"), ("N = 'ab' * 10**9\n", "'ab' * 10 ** 9")]:
        path.write_text("import gridrun\n" + bad + "FLAGS = gridrun.flags(n=N)\n")
        with pytest.raises(FlagError, match=f"flag 'n' uses `{re.escape(shown)}`.*module-level constant"):
            declared_flags(path)


def test_flags_file_of_named_profiles_only(tmp_path, monkeypatch):
    """Issue 12 item 12: a flags.yml holding only named profiles (no `default:`), as tfruns allows."""
    f = tmp_path / "flags.yml"
    f.write_text("small:\n  nodes1: 16\nbig:\n  nodes1: 512\n  lr: 0.5\n")
    assert declare(file=f).as_dict() == {"lr": 0.001, "nodes1": 256, "bn": True, "optimizer": "rmsprop"}
    assert declare(file=f, config="big").as_dict() == {"lr": 0.5, "nodes1": 512, "bn": True, "optimizer": "rmsprop"}
    assert declare(["--config", "small"], file=f).nodes1 == 16
    with pytest.raises(FlagError, match="unknown profile 'huge'.*profiles there: small, big"):
        declare(file=f, config="huge")
    f.write_text("small:\n  nodes1: 16\nnodes1: 3\n")  # mixed: a flag with a mapping value stays an error
    with pytest.raises(FlagError, match="non-scalar value"):
        declare(file=f)


def test_command_line_stops_at_double_dash_and_runner_ignores_script_args(tmp_path, monkeypatch):
    """Issue 12 item 3: arguments after `--` belong to the script; under a runner, sys.argv is the script's."""
    assert declare(["--nodes1", "8", "--", "--data", "x.csv"]).nodes1 == 8
    monkeypatch.setattr(sys, "argv", ["train.py", "--data", "x.csv", "-v"])
    ctx = RunContext(run_dir=tmp_path, flags={"nodes1": 32}, properties={"script_args": ["--data", "x.csv", "-v"]})
    with activate(ctx):
        assert gridrun.flags(nodes1=1, data="none").as_dict() == {"nodes1": 32, "data": "none"}
    with activate(RunContext(run_dir=tmp_path)), pytest.raises(FlagError, match="unexpected argument '-v'"):
        gridrun.flags(nodes1=1)  # a run recorded by hand (GRIDRUN_RUN_DIR): its command line is its flags
