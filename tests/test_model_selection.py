"""tools/model_selection.py: rank correlations and the ranking of evaluated runs."""

import json
import os

import numpy as np
import pytest

from tools import model_selection


def test_rank_correlations_on_known_cases():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert model_selection.spearman(x, x**3) == pytest.approx(1.0)
    assert model_selection.kendall_tau_b(x, -x) == pytest.approx(-1.0)
    # One swapped pair out of 10: tau = (9 - 1) / 10; rho = 1 - 6 * 2 / (5 * 24).
    y = np.array([1.0, 3.0, 2.0, 4.0, 5.0])
    assert model_selection.kendall_tau_b(x, y) == pytest.approx(0.8)
    assert model_selection.spearman(x, y) == pytest.approx(0.9)
    np.testing.assert_array_equal(model_selection.average_ranks([3, 1, 3, 2]), [3.5, 1, 3.5, 2])


def test_rank_correlations_match_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 4, size=(2, 9)).astype(float)
        if len(set(x)) < 2 or len(set(y)) < 2:
            continue
        assert model_selection.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
        assert model_selection.kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y)[0])


def _evaluated_run(root, name, step, rankme, knn, linear):
    workdir = os.path.join(root, name)
    os.makedirs(os.path.join(workdir, "eval"))
    metrics = {
        "rankme/backbone": rankme,
        "knn/top1_k200": knn,
        "knn/top1_k20": knn,
        "linear/top1": linear,
    }
    with open(os.path.join(workdir, "eval", f"{step}.json"), "w") as f:
        json.dump({"step": step, "metrics": metrics}, f)
    with open(os.path.join(workdir, "eval", "1.json"), "w") as f:  # an older evaluation
        json.dump({"step": 1, "metrics": {k: 0.0 for k in metrics}}, f)
    return workdir


def test_select_ranks_runs_by_rankme_and_reports_agreement(tmp_path, capsys):
    runs = [
        _evaluated_run(tmp_path, "a", 100, rankme=40.0, knn=0.50, linear=0.55),
        _evaluated_run(tmp_path, "b", 100, rankme=90.0, knn=0.60, linear=0.62),
        _evaluated_run(tmp_path, "c", 100, rankme=10.0, knn=0.30, linear=0.40),
    ]
    report = model_selection.select(runs)
    assert [os.path.basename(r["workdir"]) for r in report["runs"]] == ["b", "a", "c"]
    assert report["selected"] == runs[1] and report["best_by"]["linear/top1"] == runs[1]
    assert report["correlations"]["knn/top1_k200"]["spearman"] == pytest.approx(1.0)
    model_selection.main([*runs, "--out", str(tmp_path / "report.json")])
    assert "selected without labels: b" in capsys.readouterr().out
    assert json.load(open(tmp_path / "report.json"))["selected"] == runs[1]


def test_unevaluated_run_says_how_to_evaluate(tmp_path):
    os.makedirs(tmp_path / "raw")
    with pytest.raises(SystemExit, match="jaxssl eval --workdir"):
        model_selection.main([str(tmp_path / "raw")])
