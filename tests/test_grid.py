"""Grid construction, typing and sampling (gridrun/grid.py)."""

import itertools
import math

import pandas as pd
import pytest

from gridrun.commands._common import parse_flag_option, split_values
from gridrun.errors import FlagError, GridrunError
from gridrun.flagspec import declared_flags, flag_boolean, flag_integer, flag_numeric, flag_string
from gridrun.grid import build_grid, sample_grid, sample_size

SPECS = {
    "nodes1": flag_integer("nodes1", 128),
    "lr": flag_numeric("lr", 0.001),
    "optimizer": flag_string("optimizer", "adam"),
    "bn": flag_boolean("bn", False),
}


def test_product_order_first_flag_varies_fastest():
    values = {"nodes1": [64, 128, 256], "optimizer": ["rmsprop", "adam"], "bn": [True, False]}
    grid = build_grid(values, SPECS)
    assert len(grid) == 12
    got = [grid[i] for i in range(len(grid))]
    # tfruns' expand.grid order: itertools.product over the reversed flags, read backwards
    names = list(values)
    expected = [dict(zip(names, reversed(combo))) for combo in itertools.product(*reversed(list(values.values())))]
    assert got == expected
    assert got[0] == {"nodes1": 64, "optimizer": "rmsprop", "bn": True}
    assert got[1] == {"nodes1": 128, "optimizer": "rmsprop", "bn": True}
    with pytest.raises(IndexError):
        grid[12]


def test_values_are_typed_by_declarations():
    grid = build_grid({"nodes1": ["64", 128.0], "lr": ["1e-5", 2e-5], "bn": ["true", "no"]}, SPECS)
    assert grid.values == {"nodes1": [64, 128], "lr": [1e-5, 2e-5], "bn": [True, False]}
    assert all(type(v) is int for v in grid.values["nodes1"])
    # duplicates after typing are kept once
    assert build_grid({"nodes1": ["64", 64, "64.0"]}, SPECS).values == {"nodes1": [64]}


def test_bad_value_names_flag_value_and_fix():
    with pytest.raises(FlagError) as err:
        build_grid({"nodes1": [64, "lots"]}, SPECS)
    msg = str(err.value)
    assert "nodes1" in msg and "'lots'" in msg and "--flag nodes1=" in msg


def test_undeclared_flag_is_an_error_with_suggestion():
    with pytest.raises(FlagError) as err:
        build_grid({"node1": [64]}, SPECS)
    assert "node1" in str(err.value) and "nodes1" in str(err.value)


def test_empty_value_list_is_an_error():
    with pytest.raises(GridrunError, match="empty"):
        build_grid({"nodes1": []}, SPECS)


def test_split_values_keeps_quoted_commas():
    assert split_values('adam,"a,b", c') == ["adam", "a,b", "c"]
    assert parse_flag_option('--name="x,y",z') == ("name", ["x,y", "z"])
    assert parse_flag_option("dropout-rate=0.1,0.2") == ("dropout_rate", ["0.1", "0.2"])
    with pytest.raises(GridrunError, match="NAME=VALUES"):
        parse_flag_option("nodes1")


def test_combinations_table_used_as_given(tmp_path):
    df = pd.DataFrame({"nodes1": [64, 32], "optimizer": ["adam", "sgd"]})
    grid = build_grid(combinations=df, specs=SPECS)
    assert len(grid) == 2 and grid[1] == {"nodes1": 32, "optimizer": "sgd"}
    csv = tmp_path / "c.csv"
    csv.write_text('nodes1,optimizer,bn\n16,"a,b",true\n8,adam,false\n')
    grid = build_grid(combinations=str(csv), specs=SPECS)
    assert [grid[0], grid[1]] == [{"nodes1": 16, "optimizer": "a,b", "bn": True},
                                  {"nodes1": 8, "optimizer": "adam", "bn": False}]
    csv.write_text("nodes1\nmany\n")
    with pytest.raises(FlagError, match="many"):
        build_grid(combinations=str(csv), specs=SPECS)
    csv.write_text("nodes1,lr\n16,\n")
    with pytest.raises(GridrunError, match="row 1"):
        build_grid(combinations=str(csv), specs=SPECS)
    with pytest.raises(GridrunError, match="both a column"):  # a constant beside a table is for other flags
        build_grid({"nodes1": [1]}, SPECS, combinations=df)


@pytest.mark.parametrize(
    ("n", "sample", "expected"),
    [(2916, 0.05, 146), (2916, None, 2916), (10, 0.0001, 1), (10, 1, 10), (10, 1.0, 10), (10, 3, 3),
     (10, 50, 10), (7, 0.5, 4), (100, 0.07, 7)],
)
def test_sample_size(n, sample, expected):
    assert sample_size(n, sample) == expected


@pytest.mark.parametrize("bad", [0, -1, 0.0, 2.5, float("nan"), "x", True])
def test_bad_sample_values(bad):
    with pytest.raises(GridrunError):
        sample_size(10, bad)


def test_sampling_is_distinct_and_seeded():
    a = sample_grid(1000, 0.1, seed=7)
    assert len(a) == 100 and len(set(a)) == 100 and all(0 <= i < 1000 for i in a)
    assert sample_grid(1000, 0.1, seed=7) == a
    assert sample_grid(1000, 0.1, seed=8) != a
    assert a != sorted(a)  # random execution order
    assert sample_grid(1000, 0.1, seed=7, ordered=True) == sorted(a)
    full = sample_grid(20, seed=3)
    assert sorted(full) == list(range(20)) and full != list(range(20))
    assert sample_grid(20, seed=3, ordered=True) == list(range(20))


def test_huge_grid_is_sampled_by_index_without_materializing():
    values = {f"f{i}": list(range(10)) for i in range(9)}  # 10^9 combinations
    specs = {name: flag_integer(name, 0) for name in values}
    grid = build_grid(values, specs)
    assert len(grid) == 10**9
    picks = sample_grid(grid, 5, seed=1)
    assert len(set(picks)) == 5
    for i in picks:  # mixed-radix digits: the first flag is the lowest digit
        combo = grid[i]
        assert [combo[f"f{k}"] for k in range(9)] == [(i // 10**k) % 10 for k in range(9)]
    assert grid[10**9 - 1] == {name: 9 for name in values}
    assert math.ceil(1e-9 * len(grid)) == len(sample_grid(grid, 1e-9, seed=2))


def test_declared_flags_drive_typing(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import gridrun\nFLAGS = gridrun.flags(gridrun.flag_integer('units', 8), lr=0.1)\n")
    grid = build_grid({"units": ["4"], "lr": ["0.5"]}, declared_flags(script))
    assert grid[0] == {"units": 4, "lr": 0.5}
