"""Edge cases of --top, --hist, --check, --from and merge: ties, infinities, the limits of
float64, losses outside their domain a step away, hand-edited states. Each fails a class of
inputs, tested with several cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import assert_usage_error, run_cli, run_process


def _json(*args) -> dict:
    out = run_cli(*args, "-f", "json")
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("values", [np.zeros(30), np.round(np.random.default_rng(3).random(40), 1),
                                    np.repeat([1.0, 2.0, 3.0], 11)])  # fmt: skip
def test_top_among_equal_losses_keeps_the_first_rows_whatever_the_blocks(tmp_path, values):
    np.save(tmp_path / "p.npy", values)
    np.save(tmp_path / "t.npy", np.zeros_like(values))
    expected = np.argsort(-(values**2), kind="stable")[:6].tolist()
    for blocks in ([], ["--block-rows", "1"], ["--block-rows", "4"], ["--block-rows", "7"]):
        top = _json("mse", tmp_path / "p.npy", tmp_path / "t.npy", "-r", "sum", "--top", "6",
                    "--dtype", "float64", *blocks)["top"]  # fmt: skip
        assert [r["row"] for r in top] == expected, blocks


def test_top_keeps_rows_of_infinite_loss_and_drops_only_ignored_ones(tmp_path):
    x = np.array([[np.log(0.5)] * 2, [0.0, -np.inf], [np.log(0.2), np.log(0.8)]])
    t = np.array([[0.5, 0.5], [0.0, 1.0], [0.5, 0.5]])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    got = _json("kl-div", tmp_path / "x.npy", tmp_path / "t.npy", "--allow-nonfinite",
                "-r", "sum", "--top", "3", "-q")  # fmt: skip
    assert sorted(r["row"] for r in got["top"]) == [0, 1, 2]
    assert got["top"][0]["row"] == 1 and got["top"][0]["loss"] is None  # inf, as null
    refused = run_process("kl-div", tmp_path / "x.npy", tmp_path / "t.npy", "--top", "10001")
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1


@pytest.mark.parametrize("value", [1.3e154, 1e300, 1e-300, 5e-324])
def test_hist_of_losses_at_the_ends_of_float64(tmp_path, value):
    np.save(tmp_path / "p.npy", np.array([value, 1.0, 0.0, 2.0]))
    np.save(tmp_path / "t.npy", np.zeros(4))
    for loss in ("mse", "l1"):
        got = _json(loss, tmp_path / "p.npy", tmp_path / "t.npy", "--dtype", "float64", "--hist")
        hist = got["hist"]
        assert sum(hist["counts"]) + hist["nonfinite"] == 4
        if hist["nonfinite"] == 0:
            values = np.array([value, 1.0, 0.0, 2.0])
            expected = (values**2 if loss == "mse" else values).max()
            assert hist["quantiles"]["max"] == pytest.approx(expected, rel=1e-12)


def _edited_state(tmp_path, edit) -> None:
    """s.json: the state of a ce run over 9 rows, changed by ``edit``."""
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(9, 3)))
    np.save(tmp_path / "y.npy", np.arange(9) % 3)
    run_cli("ce", tmp_path / "x.npy", tmp_path / "y.npy", "--emit-state", tmp_path / "s.json")
    state = json.loads((tmp_path / "s.json").read_text())
    edit(state)
    (tmp_path / "s.json").write_text(json.dumps(state))


@pytest.mark.parametrize("edit", [
    lambda s: s.update(sum=10**400),
    lambda s: s["gradient"]["predictions"].update(sum_squares=-(10**400)),
    lambda s: s["hist"].update(max=10**400),
    lambda s: s["top"]["rows"][0].update(target={"a": 1}),
    lambda s: s["top"]["rows"][0].update(prediction=[[1, 2]]),
    lambda s: s["top"]["rows"][0].update(loss="many"),
    lambda s: s["hist"]["positive"].update({"99999": 1})
    or s["hist"].update(count=s["hist"]["count"] + 1),
    lambda s: s.update(class_names=[1, 2]),
])  # fmt: skip
def test_hand_edited_states_are_refused_or_read_never_a_crash(tmp_path, edit):
    _edited_state(tmp_path, edit)
    out = run_cli("merge", tmp_path / "s.json", "--hist", "--top", "3")
    assert out.exit_code in (0, 2), out.stderr
    if out.exit_code == 2:
        assert len(out.stderr.strip().splitlines()) == 1


def test_merge_of_sums_beyond_float64_and_of_opposite_infinities(tmp_path):
    for name, value in (("a", 1.3e154), ("b", 1.3e154)):
        np.save(tmp_path / f"{name}.npy", np.array([value, 0.0]))
        np.save(tmp_path / "z.npy", np.zeros(2))
        run_cli("mse", tmp_path / f"{name}.npy", tmp_path / "z.npy", "--dtype", "float64",
                "--emit-state", tmp_path / f"{name}.json")  # fmt: skip
    got = run_cli("merge", tmp_path / "a.json", tmp_path / "b.json", "-f", "value")
    assert got.exit_code == 0 and float(got.stdout) == np.inf
    state = json.loads((tmp_path / "a.json").read_text())
    other = json.loads((tmp_path / "b.json").read_text())
    state["sum"], other["sum"] = "inf", "-inf"
    (tmp_path / "a.json").write_text(json.dumps(state))
    (tmp_path / "b.json").write_text(json.dumps(other))
    got = run_cli("merge", tmp_path / "a.json", tmp_path / "b.json", "-f", "value")
    assert got.exit_code == 0 and got.stdout.strip() == "nan"


@pytest.mark.parametrize("preds", [[1.0, 0.5, 0.3, 0.0], [1 - 1e-9, 0.5, 1e-9, 0.7]])
@pytest.mark.parametrize("extra", [[], ["--from", "probs"], ["--dtype", "float16"]])
def test_check_of_bce_at_the_edges_of_its_domain(tmp_path, preds, extra):
    np.save(tmp_path / "p.npy", np.array(preds))
    np.save(tmp_path / "t.npy", np.array([1.0, 0.0, 1.0, 0.0]))
    out = run_cli("bce", tmp_path / "p.npy", tmp_path / "t.npy", "--check", "-f", "json", *extra)
    assert out.exit_code == 0, out.stderr
    assert "finite differences" not in out.stderr


@pytest.mark.parametrize("case", ["confident", "saturated", "soft-target"])
def test_check_does_not_warn_on_right_gradients_that_are_tiny(tmp_path, rng, case):
    if case == "confident":
        x = np.zeros((4, 4))
        x[0, 0], x[1:, 3] = 12, 100
        loss, t = "ce", np.zeros(4, dtype=int)
    elif case == "saturated":
        x = rng.normal(size=(1000, 10)) + 30 * np.eye(10)[rng.integers(0, 10, 1000)]
        loss, t = "ce", np.argmax(x, 1)
        t[::5] = (t[::5] + 1) % 10
    else:
        x = rng.normal(size=(20, 3))
        loss, t = "bce-logits", 1 / (1 + np.exp(-x))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    got = _json(loss, tmp_path / "x.npy", tmp_path / "t.npy", "--check", "--dtype", "float64")
    assert not any("--check" in w for w in got["warnings"]), got["check"]


def test_check_with_from_probs_measures_rounding_not_the_clamp(tmp_path):
    p = np.array([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]], dtype=np.float32)
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "y.npy", np.array([0, 1, 2]))
    for dtype in ("float32", "float64"):
        got = _json("ce", tmp_path / "p.npy", tmp_path / "y.npy", "--from", "probs", "--check",
                    "--dtype", dtype)  # fmt: skip
        assert got["check"]["value_rel_error"] < 1e-6, dtype


def test_merged_check_warns_once_and_says_when_a_part_lacks_it(tmp_path, rng):
    a = (rng.normal(size=(200, 4)) * 0.01 + 20).astype(np.float32)
    b = (rng.normal(size=(200, 4)) * 0.01 + 20).astype(np.float32)
    for name, rows in (("1", slice(0, 90)), ("2", slice(90, None))):
        np.save(tmp_path / f"a{name}.npy", a[rows])
        np.save(tmp_path / f"b{name}.npy", b[rows])
        run_cli("mse", tmp_path / f"a{name}.npy", tmp_path / f"b{name}.npy", "--dtype", "float16",
                "--check", "--emit-state", tmp_path / f"{name}.json")  # fmt: skip
    out = run_cli("merge", tmp_path / "1.json", tmp_path / "2.json")
    assert out.stderr.count("--check:") == 1
    run_cli("mse", tmp_path / "a2.npy", tmp_path / "b2.npy", "--dtype", "float16",
            "--emit-state", tmp_path / "3.json")  # fmt: skip
    out = run_cli("merge", tmp_path / "1.json", tmp_path / "3.json", "-f", "json")
    got = json.loads(out.stdout)
    assert "check" not in got and any("without it" in w for w in got["warnings"])


@pytest.mark.parametrize("block_rows", [None, "1", "2", "5"])
def test_from_logits_of_one_distribution_is_the_same_whatever_the_blocks(tmp_path, block_rows):
    x = np.array([0.5, -1.0, 2.0, 0.1, -0.3, 1.2])
    t = np.array([0.1, 0.2, 0.3, 0.1, 0.2, 0.1])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    extra = ["--block-rows", block_rows] if block_rows else []
    got = _json("kl-div", tmp_path / "x.npy", tmp_path / "t.npy", "--from", "logits", "-r", "sum",
                "--dtype", "float64", *extra)  # fmt: skip
    logp = x - np.log(np.exp(x).sum())
    assert got["value"] == pytest.approx((t * (np.log(t) - logp)).sum(), rel=1e-12)


@pytest.mark.parametrize("rows", [[[0.2, 0.3, 0.2]], [[0.9, 0.9, 0.1]], [[0.3, 0.3, 0.3]]])
def test_from_probs_warns_where_rows_do_not_sum_to_one(tmp_path, rows):
    p = np.array([[0.2, 0.3, 0.5], *rows, [0.1, 0.1, 0.8]])
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "y.npy", np.array([0, 1, 2]))
    for loss in ("ce", "nll"):
        got = _json(loss, tmp_path / "p.npy", tmp_path / "y.npy", "--from", "probs")
        assert any("do not sum to 1, first at row 2" in w for w in got["warnings"]), loss
    p[1] = [0.33, 0.33, 0.33]  # rounded to 2 decimals: within what rounding explains
    np.save(tmp_path / "p.npy", p)
    got = _json("ce", tmp_path / "p.npy", tmp_path / "y.npy", "--from", "probs")
    assert not any("sum to 1" in w for w in got["warnings"])


def test_merge_keeps_class_names_for_top_and_by_class(tmp_path):
    names = ["cat", "dog", "bird"]
    table = "cat,dog,bird\n" + "\n".join(f"{i % 3},{(i * 7) % 5},{i % 2}" for i in range(9))
    (tmp_path / "x.csv").write_text(table + "\n")
    (tmp_path / "y.csv").write_text("\n".join(str(i % 3) for i in range(9)) + "\n")
    one = _json("ce", tmp_path / "x.csv", tmp_path / "y.csv", "--top", "2", "--by-class",
                "--emit-state", tmp_path / "s.json")  # fmt: skip
    merged = _json("merge", tmp_path / "s.json", "--top", "2", "--by-class")
    assert [r["class"] for r in merged["by_class"]] == names
    assert merged["top"][0]["target"] == one["top"][0]["target"] in names


def test_ctc_reads_whole_whatever_block_rows_say():
    args = ["ctc", "sample_data/ctc_log_probs.npy", "sample_data/ctc_targets.csv",
            "sample_data/ctc_input_lengths.csv", "sample_data/ctc_target_lengths.csv"]  # fmt: skip
    whole = _json(*args)["value"]
    assert _json(*args, "--block-rows", "3")["value"] == whole
    assert _json(*args, "--block-rows", "1", "--top", "2", "--hist")["value"] == whole


def test_steps_of_zero_dimensional_inputs(tmp_path):
    for name, value in (("a", 1.5), ("b", 0.5)):
        np.save(tmp_path / f"{name}.npy", np.array(value))
    out = run_cli("gaussian-nll", tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "b.npy",
                  "--steps")  # fmt: skip
    assert out.exit_code == 0 and "reduction mean" in out.stdout
    assert_usage_error(run_cli("gaussian-nll", tmp_path / "a.npy", "--steps"))


# ------------------------------------------------------------------ a second hostile round


def test_standard_error_of_a_large_mean_with_a_small_spread(tmp_path, rng):
    from scipy import stats

    t = rng.normal(size=(200, 2))
    a = t + 1e6 + rng.normal(size=(200, 2)) * 0.1
    b = t + 1e6 + rng.normal(size=(200, 2)) * 0.1
    for name, array in (("t", t), ("a", a), ("b", b)):
        np.save(tmp_path / f"{name}.npy", array)
    one = _json("mse", tmp_path / "b.npy", tmp_path / "t.npy", "--dtype", "float64")
    assert one["stderr"] == pytest.approx(stats.sem(((b - t) ** 2).ravel()), rel=1e-6)
    for extra in ([], ["--block-rows", "7"]):
        got = _json("compare", "mse", tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "t.npy",
                    "--dtype", "float64", *extra)["difference"]  # fmt: skip
        d = ((b - t) ** 2 - (a - t) ** 2).ravel()
        assert got["stderr"] == pytest.approx(stats.sem(d), rel=1e-6)
        assert (got["ci95"][0] + got["ci95"][1]) / 2 == pytest.approx(got["value"], rel=1e-9)
    for name, rows in (("1", slice(0, 70)), ("2", slice(70, None))):
        np.save(tmp_path / f"b{name}.npy", b[rows])
        np.save(tmp_path / f"t{name}.npy", t[rows])
        run_cli("mse", tmp_path / f"b{name}.npy", tmp_path / f"t{name}.npy", "--dtype", "float64",
                "--emit-state", tmp_path / f"{name}.json")  # fmt: skip
    merged = _json("merge", tmp_path / "1.json", tmp_path / "2.json")
    assert merged["stderr"] == pytest.approx(one["stderr"], rel=1e-9)


def test_ctc_gives_no_standard_error_its_mean_scales_each_sample():
    args = ["sample_data/ctc_log_probs.npy", "sample_data/ctc_targets.csv",
            "sample_data/ctc_input_lengths.csv", "sample_data/ctc_target_lengths.csv"]  # fmt: skip
    got = _json("ctc", *args)
    assert got["stderr"] is None and "scales" in got["stderr_note"]
    compared = _json("compare", "ctc", args[0], *args)["difference"]
    assert compared["value"] == 0 and compared["stderr"] is None


def test_compare_refuses_columns_named_differently_and_reads_shards(tmp_path, rng):
    x, y = rng.normal(size=(12, 3)), rng.integers(0, 3, 12)
    (tmp_path / "a.csv").write_text("cat,dog,eel\n" + "\n".join(",".join(map(str, r)) for r in x))
    (tmp_path / "b.csv").write_text("dog,cat,eel\n" + "\n".join(",".join(map(str, r)) for r in x))
    np.save(tmp_path / "y.npy", y)
    assert_usage_error(
        run_cli("compare", "ce", tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "y.npy"),
        "name their columns differently",
    )
    for side in ("p", "q", "t"):
        (tmp_path / side).mkdir()
    for i, rows in enumerate((slice(0, 5), slice(5, None))):
        np.save(tmp_path / "p" / f"{i}.npy", x[rows])
        np.save(tmp_path / "q" / f"{i}.npy", x[rows] * 2)
        np.save(tmp_path / "t" / f"{i}.npy", y[rows])
    got = _json("compare", "ce", tmp_path / "p", tmp_path / "q", tmp_path / "t")
    np.save(tmp_path / "q.npy", x * 2)
    alone = _json("ce", tmp_path / "q.npy", tmp_path / "y.npy")
    assert got["b"]["value"] == pytest.approx(alone["value"], rel=1e-12)


@pytest.mark.parametrize("cells", [["1", "1.0", "1e0", " 1"], ["2", "2.00", "x", ""],
                                   ["nan", "", "NaN", "3"]])  # fmt: skip
def test_group_labels_do_not_depend_on_how_the_column_was_read(tmp_path, monkeypatch, cells):
    from losscli.io import text

    lines = ["p0,p1,label,g"]
    lines += [f"{i % 3 * 0.5},{i % 2},{i % 2},{cells[i % len(cells)]}" for i in range(40)]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    args = ["ce", path, "--pred-cols", "p0,p1", "--target-cols", "label", "--group-by", "g"]
    whole = _json(*args)["by_group"]
    monkeypatch.setattr(text, "ARROW_BLOCK_BYTES", 64)  # chunks of numbers and of text
    assert _json(*args)["by_group"] == whole
    labels = {g["group"] for g in whole}
    assert "1.0" not in labels and "1e0" not in labels and " 1" not in labels
    assert sum(g["count"] for g in whole) == 40


def test_group_limits_and_mixed_states_in_merge(tmp_path, monkeypatch):
    from losscli.views import group_by

    for name, offset in (("a", 0), ("b", 3)):
        rows = "\n".join(f"{i * 0.1},{i % 2},{offset + i}" for i in range(3))
        (tmp_path / f"{name}.csv").write_text("p,y,id\n" + rows + "\n")
        run_cli("bce-logits", tmp_path / f"{name}.csv", "--pred-cols", "p", "--target-cols", "y",
                "--group-by", "id", "--emit-state", tmp_path / f"{name}.json")  # fmt: skip
    monkeypatch.setattr(group_by, "MAX_GROUPS", 5)
    assert_usage_error(run_cli("merge", tmp_path / "a.json", tmp_path / "b.json"), "more than 5")
    run_cli("bce-logits", tmp_path / "b.csv", "--pred-cols", "p", "--target-cols", "y",
            "--emit-state", tmp_path / "c.json")  # fmt: skip
    got = _json("merge", tmp_path / "a.json", tmp_path / "c.json")
    assert "by_group" not in got and any("without it" in w for w in got["warnings"])


@pytest.mark.parametrize("edit", [
    lambda s: s.pop("denominator"),
    lambda s: s.update(denominator=None),
    lambda s: s.update(warnings=[1]),
    lambda s: s.update(groups=[]),
    lambda s: s.update(moments={"count": 3, "mean": "x", "m2": 1}),
    lambda s: s.update(moments={"count": 3, "mean": 1, "m2": -1}),
])  # fmt: skip
def test_more_hand_edited_states_are_refused(tmp_path, edit):
    _edited_state(tmp_path, edit)
    assert_usage_error(run_cli("merge", tmp_path / "s.json"))


def test_check_skips_points_steeper_than_its_step(tmp_path, rng):
    x1 = rng.normal(size=(6, 4))
    x1[0] = 0.0  # a zero embedding: cosine is steep there
    np.save(tmp_path / "x1.npy", x1)
    np.save(tmp_path / "x2.npy", rng.normal(size=(6, 4)))
    np.save(tmp_path / "y.npy", np.ones(6))
    got = _json("cosine-embedding", tmp_path / "x1.npy", tmp_path / "x2.npy", tmp_path / "y.npy",
                "--check", "--dtype", "float64")  # fmt: skip
    assert not any("--check" in w for w in got["warnings"]), got["check"]


def test_from_probs_rounded_gives_no_log_probability_warning(tmp_path, rng):
    p = np.round(rng.dirichlet(np.ones(4), size=20), 2)
    p[:, -1] = np.round(1 - p[:, :-1].sum(1), 2)
    p = np.clip(p, 0, 1)
    text = "\n".join(",".join(f"{v:.2f}" for v in row) for row in p) + "\n"
    (tmp_path / "p.csv").write_text(text)
    np.save(tmp_path / "y.npy", rng.integers(0, 4, 20))
    runs = (["nll", tmp_path / "p.csv", tmp_path / "y.npy"],
            ["kl-div", tmp_path / "p.csv", tmp_path / "p.csv", "-r", "batchmean"])  # fmt: skip
    for args in runs:
        got = _json(*args, "--from", "probs")
        assert not any("log-probabilities" in w for w in got["warnings"]), got["warnings"]


def test_group_by_in_batch_jobs_and_refused_ranges(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("p,y,g\n0.1,1,a\n0.2,0,b\n0.3,1,a\n")
    jobs = [
        {"loss": "bce-logits", "inputs": [str(table)], "options": {"pred_cols": ["p"],
         "target_cols": "y", "group_by": ["g"]}},
        {"loss": "bce-logits", "inputs": [str(table)], "options": {"pred_cols": 0,
         "target_cols": 1, "group_by": 2}},
    ]  # fmt: skip
    (tmp_path / "jobs.ndjson").write_text("\n".join(json.dumps(j) for j in jobs) + "\n")
    out = run_cli("batch", tmp_path / "jobs.ndjson")
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert [[g["group"] for g in r["by_group"]] for r in results] == [["a", "b"], ["a", "b"]]
    single = ["--pred-cols", "p", "--target-cols", "y"]
    assert_usage_error(run_cli("bce-logits", table, *single, "--group-by", "1:3"), "one column")


def test_ce_refuses_negative_class_probabilities(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    np.save(tmp_path / "t.npy", np.array([[2.0, -1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert_usage_error(run_cli("ce", tmp_path / "x.npy", tmp_path / "t.npy"), "not >= 0")


def test_states_with_nan_merge_and_run_on_dask(tmp_path, rng):
    """NaN written as "nan" (sums, gradient min/max) and as null (top rows) reads back."""
    a = rng.normal(size=(50, 3))
    a[3, 1] = np.nan
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", np.zeros((50, 3)))
    args = ["mse", tmp_path / "a.npy", tmp_path / "b.npy", "--allow-nonfinite", "-q"]
    one = _json(*args, "--top", "2", "--emit-state", tmp_path / "s.json")
    merged = _json("merge", tmp_path / "s.json", "--top", "2", "-q")
    on_dask = _json(*args, "--top", "2", "--dask", "local")
    for got in (merged, on_dask):
        assert got["value"] is None and got["gradient"]["predictions"]["max"] is None
        assert [r["row"] for r in got["top"]] == [r["row"] for r in one["top"]]
        assert got["top"][0]["row"] == 3  # the NaN row counts as the highest
        assert got["top"][0]["prediction"][1] is None
