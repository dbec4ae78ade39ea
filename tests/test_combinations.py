"""`--combinations` people can write: CSV, JSON (a list of objects), YAML (a list of mappings), constants
from `--flag NAME=VALUE`, the table's own order unless `--shuffle`, and conditional flags in a table."""

import json

import pytest
from _util import run_cli

import gridrun
from gridrun.errors import FlagError, GridrunError
from gridrun.flagspec import _collect, flag_integer, flag_numeric, flag_string
from gridrun.grid import build_grid, read_table
from gridrun.sweep import list_sweeps

SCRIPT = """
import gridrun
FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 0.1), gridrun.flag_integer("units", 8),
                      gridrun.flag_integer("epochs", 1), gridrun.flag_integer("layers", 2, values=[2, 3]),
                      gridrun.flag_integer("nodes3", 16, when={"layers": 3}))
gridrun.log_metrics(loss=FLAGS.lr * FLAGS.units, val_loss=FLAGS.lr)
"""

SPECS = _collect((flag_numeric("lr", 0.1), flag_integer("units", 8), flag_integer("epochs", 1),
                  flag_string("optimizer", "adam"), flag_integer("layers", 2, values=[2, 3]),
                  flag_integer("nodes3", 16, when={"layers": 3})), {})
ROWS = [{"lr": 0.5, "units": 2}, {"lr": 0.25, "units": 4}, {"lr": 0.125, "units": 8}]


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return path


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("name", "text"), [
    ("c.csv", "lr,units\n0.5,2\n0.25,4\n0.125,8\n"),
    ("c.json", json.dumps(ROWS)),
    ("c.yml", "- {lr: 0.5, units: 2}\n- lr: 0.25\n  units: 4\n- {lr: 0.125, units: 8}\n"),
    ("c.yaml", "- {lr: 0.5, units: 2}\n- {lr: 0.25, units: 4}\n- {lr: 0.125, units: 8}\n"),
    ("trials", json.dumps(ROWS)),  # no extension: told by its first character
    ("trials.txt", "- {lr: 0.5, units: 2}\n- {lr: 0.25, units: 4}\n- {lr: 0.125, units: 8}\n"),
])
def test_each_format_gives_the_same_typed_rows(tmp_path, name, text):
    grid = build_grid(combinations=str(_write(tmp_path, name, text)), specs=SPECS)
    assert [grid[i] for i in range(len(grid))] == ROWS
    assert all(type(grid[i]["units"]) is int for i in range(3))


@pytest.mark.parametrize(("name", "text", "match"), [
    ("c.json", '{"lr": [0.1, 0.2]}', "holds dict, not a list of one object per trial"),
    ("c.json", "[1, 2]", "holds a list with a int"),
    ("c.json", '[{"lr": 0.1,}]', "is not valid JSON \\(line 1\\)"),
    ("c.yml", "lr: [0.1, 0.2]\n", "holds dict, not a list of one mapping per trial"),
    ("c.json", "[]", "has no rows"),
    ("c.json", '[{"lr": 0.1}, {"units": 3}]', "row 1 of c.json has no value for flag 'units'"),
    ("c.json", '[{"lr": [0.1]}]', "flag 'lr' \\(numeric\\) cannot take \\[0.1\\] from row 1 of c.json"),
    ("c.json", '[{"lrr": 0.1}]', "did you mean 'lr'"),
])
def test_bad_tables_are_one_line_errors(tmp_path, name, text, match):
    with pytest.raises(GridrunError, match=match) as err:
        build_grid(combinations=str(_write(tmp_path, name, text)), specs=SPECS)
    assert "\n" not in str(err.value)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(GridrunError, match="does not exist"):
        read_table(tmp_path / "nope.json")


def test_constants_are_added_to_every_row():
    grid = build_grid({"epochs": ["10"], "optimizer": "sgd"}, SPECS, combinations=ROWS)
    assert [grid[i] for i in range(3)] == [{**r, "epochs": 10, "optimizer": "sgd"} for r in ROWS]
    with pytest.raises(GridrunError, match="beside a table, --flag gives a constant"):
        build_grid({"epochs": ["10", "20"]}, SPECS, combinations=ROWS)
    with pytest.raises(GridrunError, match="beside a table, --flag gives a constant"):
        build_grid({"epochs": gridrun.randint(1, 5)}, SPECS, combinations=ROWS)
    with pytest.raises(GridrunError, match="flag 'lr' is both a column"):
        build_grid({"lr": ["0.1"]}, SPECS, combinations=ROWS)
    with pytest.raises(FlagError, match="epochs"):
        build_grid({"epochs": ["ten"]}, SPECS, combinations=ROWS)


def test_conditional_flags_in_a_table():
    rows = [{"layers": 2, "lr": 0.1}, {"layers": 3, "nodes3": 32, "lr": 0.1}, {"layers": 3, "lr": 0.2, "nodes3": ""}]
    with pytest.raises(GridrunError, match="row 3 of the combinations has no value for flag 'nodes3'"):
        build_grid(combinations=rows, specs=SPECS)
    grid = build_grid(combinations=rows[:2], specs=SPECS)
    assert [grid[0], grid[1]] == [{"layers": 2, "lr": 0.1}, {"layers": 3, "nodes3": 32, "lr": 0.1}]
    with pytest.raises(GridrunError, match="row 1 of the combinations sets flag 'nodes3', which applies only if "
                                           "layers == 3 \\(layers is 2 there\\): leave the cell empty"):
        build_grid(combinations=[{"layers": 2, "nodes3": 32}], specs=SPECS)
    with pytest.raises(GridrunError, match="layers stays at its default 2"):
        build_grid(combinations=[{"nodes3": 32}], specs=SPECS)
    desc = grid.describe()  # a resumed sweep rebuilds the table from its manifest, without the script
    again = build_grid(combinations=desc["combinations"], when=desc["when"])
    assert [again[0], again[1]] == [grid[0], grid[1]]


def _trial_flags(runs):
    (path,) = list_sweeps(runs)
    return [t["flags"] for t in json.loads(path.read_text())["trials"]]


def test_cli_json_table_with_a_constant_runs_in_its_own_order(script, tmp_path):
    rows = [{**r, "layers": 2} for r in ROWS] + [{"lr": 0.0625, "units": 16, "layers": 3, "nodes3": 4}]
    table = _write(tmp_path, "trials.json", json.dumps(rows))
    runs = tmp_path / "runs"
    proc = run_cli("tuning-run", script, "--combinations", table, "--flag", "epochs=10", "--runs-dir", runs,
                   "--seed", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "4 total combinations of flags" in proc.stdout
    assert _trial_flags(runs) == [{**r, "epochs": 10} for r in rows]  # in the table's order, with the constant
    df = gridrun.ls_runs(runs)
    assert (df.flag_epochs == 10).all()
    assert df.loc[df.flag_layers == 2, "flag_nodes3"].isna().all()  # nodes3 did not apply
    assert (df.loc[df.flag_layers == 3, "flag_nodes3"] == 4).all()


def test_cli_shuffle_and_its_help(script, tmp_path):
    table = _write(tmp_path, "trials.csv", "lr,units\n" + "".join(f"0.{i + 1},{i + 1}\n" for i in range(8)))
    runs = tmp_path / "runs"
    proc = run_cli("tuning-run", script, "--combinations", table, "--shuffle", "--seed", "2", "--runs-dir", runs,
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    units = [f["units"] for f in _trial_flags(runs)]
    assert sorted(units) == list(range(1, 9)) and units != list(range(1, 9))
    proc = run_cli("tuning-run", "--help", cwd=tmp_path)
    text = " ".join(proc.stdout.split())
    assert "in its own order (unless --shuffle)" in text and "JSON (a list of objects)" in text
    assert "--shuffle run a --combinations table in a random order" in text
    proc = run_cli("tuning-run", script, "--combinations", table, "--shuffle", "--ordered", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 2 and "--ordered and --shuffle contradict each other" in proc.stderr


def test_cli_combinations_with_a_grid_file_is_refused(script, tmp_path):
    table = _write(tmp_path, "trials.json", json.dumps(ROWS))
    grid = _write(tmp_path, "grid.yml", "lr: [0.1, 0.2]\n")
    proc = run_cli("tuning-run", script, "--combinations", table, "--grid", grid, "--dry-run", cwd=tmp_path)
    assert proc.returncode == 2 and "either --combinations or --grid" in proc.stderr
    proc = run_cli("tuning-run", script, "--combinations", table, "--flag", "epochs=1,2", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 2 and "beside a table, --flag gives a constant" in proc.stderr
