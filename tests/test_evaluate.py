"Step 05: fairness numbers, gate logic, bootstrap intervals, the SHAP check, and a small pipeline run with slices and sensitive attributes."
import json
import numpy as np
import polars as pl
import pytest
import yaml
from conftest import write_config
from mlnb.config import EvaluateCfg
from mlnb.core import MlnbError
from mlnb.evaluate import (bar, bootstrap, bound_gate, check_columns, choose_threshold, contributions, fairness, shap_check,
                           verdict, weighted_metrics)
from mlnb.train import score

def test_fairness_on_a_hand_made_frame():
    # group a: 10 rows, 5 positives; decisions: 4 of the positives, 1 negative -> selection .5, TPR .8, FPR .2
    # group b: 10 rows, 5 positives; decisions: 2 of the positives, 0 negatives -> selection .2, TPR .4, FPR 0
    # group c: 2 rows (below min_rows): reported, never compared
    y = np.array([1] * 5 + [0] * 5 + [1] * 5 + [0] * 5 + [1, 0])
    d = np.array([1, 1, 1, 1, 0, 1, 0, 0, 0, 0] + [1, 1, 0, 0, 0, 0, 0, 0, 0, 0] + [1, 1])
    groups = pl.Series(["a"] * 10 + ["b"] * 10 + ["c"] * 2)
    table, diff = fairness(y, d, groups, min_rows=5)
    assert table["group"].to_list() == ["a", "b", "c"] and table["compared"].to_list() == [True, True, False]
    assert np.allclose(table["selection_rate"].to_list(), [0.5, 0.2, 1.0])
    assert diff["groups"] == 2
    assert diff["dp_diff"] == pytest.approx(0.3)                      # .5 - .2
    assert diff["eo_diff"] == pytest.approx(0.4)                      # max(TPR gap .4, FPR gap .2)
    _, with_c = fairness(y, d, groups, min_rows=1)
    assert with_c["dp_diff"] == pytest.approx(0.8)                    # the 2-row group would dominate

def test_gates():
    assert bound_gate("roc_auc", 0.8, 0.75)["passed"] and not bound_gate("roc_auc", 0.7, 0.75)["passed"]
    assert bound_gate("rmse", 2.0, 2.5)["passed"] and not bound_gate("log_loss", 0.5, 0.4)["passed"]   # losses: upper bounds
    assert bound_gate("roc_auc", 0.1, None)["passed"]                                                 # no bar set
    assert not bound_gate("roc_auc", float("nan"), 0.5)["passed"]
    assert not bound_gate("roc_auc", 0.7, bar("roc_auc", 0.7, 0.0), strict=True)["passed"]           # a tie does not beat the baseline
    assert bar("rmse", 3.0, 0.5) == 2.5 and bar("roc_auc", 0.8, -0.01) == pytest.approx(0.79)          # margin; negative = tolerance
    champion = bound_gate("roc_auc", 0.795, bar("roc_auc", 0.80, -0.01), "production")                # within the margin
    fair = bound_gate("dp_diff", 0.3, 0.2, "evaluate.max_dp_diff")
    v = verdict("roc_auc", 0.795, dict(champion=champion, fairness_region_dp_diff=fair), baseline=0.7)
    assert champion["passed"] and v["passed"] is False and v["failed"] == ["fairness_region_dp_diff"]
    assert "dp_diff 0.3000 not <= 0.2000" in v["reason"]
    assert {"passed", "metric", "model", "reason"} <= set(v)           # what 06, 07 and `mlnb models` read

def test_config_checks():
    with pytest.raises(ValueError, match="go together"): EvaluateCfg(threshold_by="cost")
    with pytest.raises(ValueError, match="unknown metric"): EvaluateCfg(min_metrics={"auc": 0.7})
    assert EvaluateCfg(threshold_by="cost", costs={"fp": 1, "fn": 5}).costs.fn == 5
    with pytest.raises(MlnbError, match="evaluate.slices names 'plans'.*did you mean 'plan'") as e:
        check_columns(EvaluateCfg(slices=["plans"]), ["plan", "age", "churned"], "churned")
    assert "use one of: plan, age" in str(e.value)
    with pytest.raises(MlnbError, match="which is the target"): check_columns(EvaluateCfg(sensitive=["churned"]), ["plan", "churned"], "churned")

def test_threshold_by_cost_and_youden():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000); p = np.clip(0.35 * y + rng.random(2000) * 0.65, 0, 1)
    cheap_fn = choose_threshold(y, p, "cost", dict(fp=5, fn=1))
    cheap_fp = choose_threshold(y, p, "cost", dict(fp=1, fn=5))
    assert cheap_fp < cheap_fn                                        # expensive misses: a lower threshold
    assert 0.2 < choose_threshold(y, p, "youden") < 0.8

def _sk(f, hard=False, proba=False):
    "A scikit-learn metric taking mlnb's predictions: P(class 1) for binary, class probabilities for multiclass."
    from sklearn import metrics
    def g(y, p):
        if hard: p = p.argmax(1) if p.ndim == 2 else p > 0.5
        elif proba and p.ndim == 1: p = np.column_stack([1 - p, p])
        return getattr(metrics, f)(y, p, **({"labels": list(range(p.shape[1]))} if proba else {}))
    return g

SKLEARN = dict(roc_auc=_sk("roc_auc_score"), average_precision=_sk("average_precision_score"), log_loss=_sk("log_loss", proba=True),
               brier=_sk("brier_score_loss"), accuracy=_sk("accuracy_score", hard=True), balanced_accuracy=_sk("balanced_accuracy_score", hard=True),
               rmse=_sk("root_mean_squared_error"), mae=_sk("mean_absolute_error"), r2=_sk("r2_score"))

def test_bootstrap_matches_score_and_covers():
    rng = np.random.default_rng(1)
    for task, y, p in [("binary", rng.integers(0, 2, 500), None), ("multiclass", rng.integers(0, 3, 500), None), ("regression", rng.normal(size=500), None)]:
        p = (np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1) if task == "binary" else
             rng.dirichlet(np.ones(3), 500) * 0.5 + np.eye(3)[y] * 0.5 if task == "multiclass" else y + rng.normal(size=500) * 0.5)
        full = {k: v[0] for k, v in weighted_metrics(task, y, p, np.ones((1, len(y)))).items()}
        for k, v in score(task, y, p).items(): assert full[k] == pytest.approx(v, abs=1e-9) == SKLEARN[k](y, p), (task, k)
        draws = rng.integers(0, len(y), (4, len(y)))                     # resampling weights = metrics of the drawn rows
        W = np.stack([np.bincount(d, minlength=len(y)) for d in draws]).astype(np.float32)
        for k, v in weighted_metrics(task, y, p, W).items():
            assert v == pytest.approx([SKLEARN[k](y[d], p[d]) for d in draws], abs=1e-5), (task, k)
        ci = bootstrap(task, y, p, n_boot=300, seed=0)
        assert ci.filter(~((pl.col("low") <= pl.col("value")) & (pl.col("value") <= pl.col("high")))).height == 0, ci
    big = rng.integers(0, 2, 200_000); pb = np.clip(0.2 * big + rng.random(200_000) * 0.8, 0, 1)
    ci = bootstrap("binary", big, pb, n_boot=200, seed=0, max_rows=20_000)      # a sample: bounded memory and time
    assert ci.height == 6 and (ci["high"] - ci["low"] < 0.05).all()

@pytest.mark.parametrize("objective", ["binary", "multiclass", "regression"])
def test_shap_check_against_tree_explainer(objective):
    import lightgbm as lgb
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4)); X[rng.random(600) < 0.1, 2] = np.nan
    y = {"binary": (X[:, 0] > 0).astype(int), "multiclass": np.digitize(X[:, 0] + X[:, 1], [-0.5, 0.5]), "regression": X[:, 0] * 3 + X[:, 1]}[objective]
    params = dict(objective=objective, verbosity=-1, seed=0, num_threads=1, **({"num_class": 3} if objective == "multiclass" else {}))
    booster = lgb.train(params, lgb.Dataset(X, y), 40)
    c = contributions(booster, X[:40])
    check = shap_check(booster, X[:40], c)
    assert check["shap_max_abs_diff"] < 1e-9 and check["additivity_max_abs_diff"] < 1e-9
    assert ("independent" in check["method"]) == (objective != "multiclass")   # shap's own TreeSHAP where its parse is right

def test_pipeline_with_slices_fairness_and_a_champion(cli, tmp_path):
    "Steps 00-05 on tiny data with slices and a sensitive attribute excluded from the features; then a bad sensitive column."
    write_config(tmp_path, features={"drop": ["region"]}, tune={"n_trials": 2},
                 evaluate={"slices": ["plan", "age", "signup_date"], "sensitive": ["region"], "max_eo_diff": 1.0, "bootstrap": 200,
                           "min_metrics": {"accuracy": 0.5}, "threshold_by": "cost", "costs": {"fp": 1.0, "fn": 4.0}})
    res = cli("run", "--steps", "00-05", "--run-id", "ev", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    out = tmp_path/"runs"/"ev"/"05_evaluate"
    gate, metrics = json.loads((out/"gate.json").read_text()), json.loads((out/"metrics.json").read_text())
    assert isinstance(gate["passed"], bool) and gate["metric"] == "roc_auc" and gate["model"] == metrics["model"]["roc_auc"]
    assert {"threshold", "baseline", "min_accuracy", "champion", "fairness_region_dp_diff", "fairness_region_eo_diff"} <= set(gate["gates"])
    assert gate["gates"]["champion"]["passed"] and "no production model" in gate["gates"]["champion"]["reason"]
    assert gate["gates"]["fairness_region_eo_diff"]["bound"] == 1.0 and set(metrics["baselines"]) == {"dummy", "linear"}
    auc = next(r for r in metrics["intervals"] if r["metric"] == "roc_auc")
    assert auc["low"] <= auc["value"] <= auc["high"]
    assert "region" not in json.loads((tmp_path/"runs"/"ev"/"02_features"/"preprocessing.json").read_text())["features"]
    fair = pl.read_csv(out/"tables"/"fairness_region.csv")
    assert fair["rows"].sum() == pl.read_parquet(tmp_path/"runs"/"ev"/"02_features"/"test.parquet").height
    for t in ("slice_plan", "slice_age", "slice_signup_date", "explanations", "shap_importance"): assert (out/"tables"/f"{t}.csv").is_file(), t
    for p in ("roc", "pr", "calibration", "confusion", "shap_summary", "shap_dependence"): assert (out/"plots"/f"{p}.png").stat().st_size > 1000, p
    assert json.loads((out/"shap_check.json").read_text())["shap_max_abs_diff"] < 1e-6
    card = (out/"model_card.md").read_text()
    snapshot = json.loads((tmp_path/"runs"/"ev"/"00_data"/"manifest.json").read_text())["id"]
    for part in ("## Intended use", snapshot, "## Test metrics (95% bootstrap intervals", "**region**: demographic parity difference",
                 "**age**", "## Gates", "## Caveats", "log_tenure"): assert part in card, part

    # champion/challenger: with this model in production, step 05 scores it on the same test rows (equal: passes)
    from mlnb.registry import register, set_alias
    split = json.loads((tmp_path/"runs"/"ev"/"02_features"/"split.json").read_text())
    (tmp_path/"signature.json").write_text(json.dumps(dict(task=split["task"], classes=split["classes"])))
    files = {"model.txt": tmp_path/"runs"/"ev"/"04_tune"/"model.txt", "preprocessing.json": tmp_path/"runs"/"ev"/"02_features"/"preprocessing.json",
             "signature.json": tmp_path/"signature.json"}
    version, _ = register(tmp_path/"registry", "churn", files, dict(run_id="ev"))
    set_alias(tmp_path/"registry", "churn", "production", version, reason="test: a production model to compare with", force=True)
    res = cli("run", "--steps", "05", "--force", "--run-id", "ev3", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    champ = json.loads((tmp_path/"runs"/"ev3"/"05_evaluate"/"gate.json").read_text())["gates"]["champion"]
    assert champ["version"] == version and champ["passed"] and champ["value"] == pytest.approx(gate["model"], abs=1e-12)
    assert champ["rows"] == len(split["ids"]["test"]) and champ["note"] is None          # the same split: every test row is new to it

    # another seed draws another split of the same data, whose test rows include rows production trained on: both are scored on the others
    res = cli("run", "--steps", "00-05", "--run-id", "ev4", "-p", "seed=7", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    champ = json.loads((tmp_path/"runs"/"ev4"/"05_evaluate"/"gate.json").read_text())["gates"]["champion"]
    seen = pl.concat([pl.read_parquet(tmp_path/"runs"/"ev"/"02_features"/f"{p}.parquet") for p in ("train", "valid")])
    test = pl.read_parquet(tmp_path/"runs"/"ev4"/"02_features"/"test.parquet")
    fresh = test.join(seen, on=test.columns, how="anti", nulls_equal=True)               # records production never saw
    assert 30 <= fresh.height < test.height and champ["rows"] == fresh.height, (fresh.height, champ)
    assert f"on the {fresh.height:,} of {test.height:,} test rows it did not train on" in champ["reason"], champ["reason"]

    # the same run with a sensitive attribute that is not a column: a clear error naming it, in step 02, before training
    res = cli("run", "--run-id", "ev2", "-p", "evaluate.sensitive=[regoin]", cwd=tmp_path)
    assert res.returncode == 1
    assert "step 02_features" in res.stdout and "evaluate.sensitive names 'regoin', which is not a column of the data (did you mean 'region'?)" in res.stdout
    rec = json.loads((tmp_path/"runs"/"ev2"/"run.json").read_text())
    assert rec["steps"]["02_features"]["status"] == "failed" and rec["steps"]["03_train"]["status"] == "pending"
