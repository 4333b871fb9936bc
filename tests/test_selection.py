"""The selection rule: choices read val columns only, average seeds, break ties to the first listed
setting, and refuse unequal tuning budgets."""

from __future__ import annotations

import pytest

from asr_transfer.selection import choose_on_val, chosen_rows, tuning_budgets


def _rows():
    # method A: setting "x" wins on val but loses on test; the rule must not look at test
    return [
        {"method": "A", "setting": "x", "seed": 0, "val/acc": 0.90, "test/acc": 0.70},
        {"method": "A", "setting": "x", "seed": 1, "val/acc": 0.88, "test/acc": 0.72},
        {"method": "A", "setting": "y", "seed": 0, "val/acc": 0.91, "test/acc": 0.95},
        {"method": "A", "setting": "y", "seed": 1, "val/acc": 0.85, "test/acc": 0.96},
        {"method": "B", "setting": "x", "seed": 0, "val/acc": 0.80, "test/acc": 0.80},
        {"method": "B", "setting": "y", "seed": 0, "val/acc": 0.80, "test/acc": 0.99},
    ]


def test_chooses_the_best_mean_val_per_group_and_ignores_test():
    rows = _rows()
    chosen = choose_on_val(rows, "val/acc", "setting", within=("method",))
    assert chosen == {("A",): "x", ("B",): "x"}  # A: mean val 0.89 vs 0.88; B: a tie goes to the first listed
    assert [(r["method"], r["seed"]) for r in chosen_rows(rows, chosen, "setting", ("method",))] == [
        ("A", 0), ("A", 1), ("B", 0)
    ]  # fmt: skip
    for r in rows:  # changing every test value changes nothing
        r["test/acc"] = 1.0 - r["test/acc"]
    assert choose_on_val(rows, "val/acc", "setting", within=("method",)) == chosen


def test_min_mode_and_strings_from_csv():
    rows = [
        {"setting": "12", "val/wer": "0.20"},
        {"setting": "15", "val/wer": "0.15"},
        {"setting": "20", "val/wer": ""},
    ]
    assert choose_on_val(rows, "val/wer", mode="min", equal_budgets=False) == {(): "15"}


def test_refuses_test_columns_and_unequal_budgets():
    with pytest.raises(ValueError, match="never test"):
        choose_on_val(_rows(), "test/acc")
    rows = [*_rows(), {"method": "A", "setting": "z", "seed": 0, "val/acc": 0.99, "test/acc": 0.5}]
    assert tuning_budgets(rows, "setting", ("method",)) == {("A",): 3, ("B",): 2}
    with pytest.raises(ValueError, match="unequal tuning budgets"):
        choose_on_val(rows, "val/acc", "setting", within=("method",))
    assert choose_on_val(rows, "val/acc", "setting", within=("method",), equal_budgets=False)[("A",)] == "z"
