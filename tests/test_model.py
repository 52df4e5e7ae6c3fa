"""Model development (steps 03 and 04): quality bar, reproducibility, resumable and shared tuning, baselines, bad input.

The step-level tests run steps 00-02 once through the CLI on the small config, then call the step functions
in-process on copies of that run folder.
"""
import json, multiprocessing, shutil, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
import numpy as np
import polars as pl
import pytest
import yaml
from conftest import write_config
from pg import INSTALL, PG_BIN, PostgresServer
from mlnb.config import Config, TrainCfg, load_config
from mlnb.core import MlnbError
from mlnb.steps import StepRun, get_step
from mlnb.train import (check_training_data, cross_validate, cv_splits, fit_baselines, fit_linear, lgb_aliases, lgb_params,
                        linear_design, predict_baseline, run_train, score)
from mlnb.tune import run_tune, tune

# --- quality ---------------------------------------------------------------------------------------------------

def test_breast_cancer_cv_log_loss():
    "5-fold CV log loss below 0.14 on breast_cancer (LightGBM's own test bar), with problem.metric = log_loss."
    from sklearn.datasets import load_breast_cancer
    X, y = load_breast_cancer(return_X_y=True)
    params = lgb_params(TrainCfg(num_threads=1), "binary", 2, seed=0, metric="log_loss")
    cv = cross_validate(X, y, params, cv_splits(5, "stratified", 0, len(y), y=y), [f"f{i}" for i in range(X.shape[1])], [],
                        "binary", rounds=1000, patience=50)
    assert cv["cv"]["log_loss"] < 0.14, cv["cv"]
    assert len(cv["folds"]) == 5 and not np.isnan(cv["oof"]).any()

def test_linear_baseline_matches_sklearn():
    "The JSON baseline predicts what the fitted scikit-learn model predicts, for each task."
    from sklearn.linear_model import LogisticRegression, Ridge
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.normal(size=400), rng.integers(0, 4, 400).astype(float), rng.normal(size=400)])
    X[::7, 0] = np.nan; X[::11, 1] = np.nan
    targets = {"binary": (X[:, 2] > 0).astype(int), "multiclass": rng.integers(0, 3, 400), "regression": X[:, 2] * 3 + 1}
    for task, y in targets.items():
        b = json.loads(json.dumps(fit_linear(X, y, task, categorical=[1], n_classes=3 if task == "multiclass" else 2)))
        Z = linear_design(b, X)
        ref = Ridge(alpha=1.0).fit(Z, y).predict(Z) if task == "regression" else LogisticRegression(C=1.0, max_iter=1000).fit(Z, y).predict_proba(Z)
        if task == "binary": ref = ref[:, 1]
        np.testing.assert_allclose(predict_baseline(b, X), ref, rtol=1e-6, atol=1e-8)
    bases = fit_baselines(X, targets["binary"], "binary", [1])
    assert set(bases) == {"dummy", "linear"} and score("binary", targets["binary"], predict_baseline(bases["linear"], X))["roc_auc"] > 0.95

def test_lightgbm_parameter_names():
    "The parameter list comes from LightGBM itself: names and aliases, canonical names resolved."
    known = lgb_aliases()
    assert len(known) > 200
    assert {known[k] for k in ("num_leaves", "num_leaf", "max_bin", "bagging_fraction", "subsample", "min_data")} == \
           {"num_leaves", "max_bin", "bagging_fraction", "min_data_in_leaf"}

# --- bad input: each a clear MlnbError before training -----------------------------------------------------------

def test_bad_training_data():
    X = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan], [4.0, np.nan]])
    with pytest.raises(MlnbError, match="single class"): check_training_data(X[:, :1], np.ones(4), "binary", ["a"])
    with pytest.raises(MlnbError, match=r"feature\(s\) tenure are missing .* in every training row") as e:
        check_training_data(X, np.array([0, 1, 0, 1]), "binary", ["age", "tenure"])
    assert "features.drop" in str(e.value) and "features.max_missing" in str(e.value)
    with pytest.raises(MlnbError, match="4 rows, fewer than the 5 cross-validation folds"):
        check_training_data(X[:, :1], np.array([0, 1, 0, 1]), "binary", ["age"], folds=5)

def test_bad_config(tmp_path):
    "An unknown LightGBM parameter and a zero time budget are config errors naming the key, before any step runs."
    for section, fragment in [({"train": {"params": {"num_leafs": 7}}}, "unknown LightGBM parameter 'num_leafs' in train.params: did you mean 'num_leaves'?"),
                              ({"train": {"params": {"seed": 7}}}, "train.params.seed is set by the top-level seed"),
                              ({"train": {"params": {"min_data_in_bin": 0}}}, "train.params.min_data_in_bin: Check failed: (min_data_in_bin) > (0)"),
                              ({"validate": {"severity": {"outlier": "off"}}}, "validate.severity names unknown check 'outlier'; did you mean 'outliers'?"),
                              ({"tune": {"timeout_s": 0}}, "a zero tuning budget runs no trial"),
                              ({"tune": {"n_trials": 0}}, "a zero tuning budget runs no trial"),
                              ({"problem": {"task": "regression", "metric": "roc_auc"}}, "does not apply to a regression task")]:
        path = write_config(tmp_path, **section)
        with pytest.raises(MlnbError) as e: load_config(path)
        assert fragment in str(e.value), str(e.value)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 2)), rng.integers(0, 2, 50)
    with pytest.raises(MlnbError, match="the tuning budget is empty"):
        tune(X, y, X, y, "binary", TrainCfg().model_dump(), ["a", "b"], [], 2, timeout_s=0)

def test_tuning_never_reads_test(tmp_path):
    assert not any(i.endswith("test.parquet") for i in get_step("04_tune").inputs)
    with pytest.raises(MlnbError, match="does not declare"):
        StepRun("04_tune", Config(), tmp_path, tmp_path/"mlnb.yaml").input("02_features", "test.parquet")
    assert "03_train/baselines.json" in get_step("05_evaluate").inputs

# --- steps 03 and 04 on a small run ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base_run(tmp_path_factory, cli):
    "Steps 00-02 of the small config, run once through the CLI: (config path, run folder)."
    folder = tmp_path_factory.mktemp("model")
    config = write_config(folder, train={"folds": 3})
    res = cli("run", "--steps", "00-02", "--run-id", "base", "-p", "tracking.mode=disabled", cwd=folder)
    assert res.returncode == 0, res.stdout + res.stderr
    return config, folder/"runs"/"base"

def copy_run(base: Path, name: str) -> Path:
    dest = base.parent/name
    shutil.copytree(base, dest)
    return dest

def test_train_step_outputs_and_byte_identical_model(base_run):
    config, base = base_run
    a, b = copy_run(base, "train-a"), copy_run(base, "train-b")
    rec = run_train(str(config), str(a))
    run_train(str(config), str(b))
    assert (a/"03_train"/"model.txt").read_bytes() == (b/"03_train"/"model.txt").read_bytes()       # same config + data -> same bytes
    assert (a/"03_train"/"baselines.json").read_bytes() == (b/"03_train"/"baselines.json").read_bytes()
    bases = json.loads((a/"03_train"/"baselines.json").read_text())
    assert set(bases) == {"dummy", "linear"} and bases["linear"]["kind"] == "linear"
    oof = pl.read_parquet(a/"03_train"/"oof.parquet")
    train = pl.read_parquet(a/"02_features"/"train.parquet")
    assert oof["customer_id"].to_list() == train["customer_id"].to_list() and oof["fold"].n_unique() == 3 and oof["pred"].null_count() == 0
    m, s = rec["metrics"], rec["summary"]
    assert {"fold1_roc_auc", "fold3_roc_auc", "cv_roc_auc", "valid_roc_auc", "baseline_linear_valid_roc_auc", "baseline_dummy_valid_roc_auc"} <= set(m)
    assert s["metric"] == "roc_auc" and s["environment"]["python"] and "lightgbm" in s["environment"]["packages"]
    assert json.loads((a/"03_train"/"environment.json").read_text()) == s["environment"]
    assert {"learning_curve"} <= set(rec["plots"]) and {"cv_folds", "valid_metrics"} <= set(rec["tables"])

def test_train_step_refuses_fewer_rows_than_folds(base_run, tmp_path):
    config, base = base_run
    cfg = yaml.safe_load(Path(config).read_text()); cfg["train"]["folds"] = 100_000
    (tmp_path/"mlnb.yaml").write_text(yaml.safe_dump(cfg))
    run = copy_run(base, "too-many-folds")
    with pytest.raises(MlnbError, match="fewer than the 100000 cross-validation folds"): run_train(str(tmp_path/"mlnb.yaml"), str(run))
    assert not (run/"03_train"/"model.txt").exists()

def test_tune_step_reproducible_and_resumable(base_run):
    config, base = base_run
    a, b = copy_run(base, "tune-a"), copy_run(base, "tune-b")
    rec = run_tune(str(config), str(a))
    run_tune(str(config), str(b))
    model = (a/"04_tune"/"model.txt").read_bytes()
    assert model == (b/"04_tune"/"model.txt").read_bytes()
    best = json.loads((a/"04_tune"/"best_params.json").read_text())
    assert {"params", "best_iteration"} <= set(best) and best["best_iteration"] >= 1 and best["trials"] == 3
    assert (a/"optuna"/"study.db").is_file() and rec["metrics"]["trials"] == 3
    assert {"optimisation_history", "learning_curve"} <= set(rec["plots"]) and "trials" in rec["tables"]
    again = run_tune(str(config), str(a))                        # a re-run continues the study: no new trial, same model
    assert again["metrics"]["trials"] == 3 and again["summary"]["study"] == rec["summary"]["study"]
    assert (a/"04_tune"/"model.txt").read_bytes() == model

# --- tuning: samplers, budgets, shared studies --------------------------------------------------------------------

def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)); y = (X[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    return X[: n * 3 // 4], y[: n * 3 // 4], X[n * 3 // 4:], y[n * 3 // 4:]

BASE = dict(TrainCfg(num_threads=1).model_dump())

def test_samplers_and_time_budget(tmp_path):
    X, y, Xv, yv = _data()
    args = (X, y, Xv, yv, "binary", BASE, ["a", "b", "c"], [], 2)
    rnd = tune(*args, n_trials=3, sampler="random", rounds=50, patience=10, verbose=False)
    assert len(rnd.trials) == 3 and isinstance(rnd.sampler, __import__("optuna").samplers.RandomSampler)
    grid = tune(*args, n_trials=10, sampler="grid", grid={"num_leaves": [4, 8]}, rounds=50, patience=10, verbose=False)
    assert sorted(t.params["num_leaves"] for t in grid.trials) == [4, 8]          # the grid is exhausted after 2
    t = time.perf_counter()
    timed = tune(*args, n_trials=None, timeout_s=1.0, rounds=50, patience=10, verbose=False)
    assert len(timed.trials) >= 1 and time.perf_counter() - t < 10

def _worker(uri, barrier):
    "One tuning worker; it starts once both workers are up (a file-based barrier), so both run trials."
    import os
    (Path(barrier)/str(os.getpid())).touch()
    t = time.time()
    while len(list(Path(barrier).iterdir())) < 2 and time.time() - t < 120: time.sleep(0.02)
    X, y, Xv, yv = _data(2000, seed=3)
    study = tune(X, y, Xv, yv, "binary", BASE, ["a", "b", "c"], [], 2, n_trials=6, rounds=100, patience=10,
                 storage=uri, name="shared", verbose=False)
    return len(study.trials)

def test_postgres_study_shared_by_two_workers(tmp_path):
    "Two processes pointed at one PostgreSQL study share it and stop together at the trial budget."
    if not (PG_BIN/"initdb").is_file(): pytest.fail(f"PostgreSQL 15 is not installed; {INSTALL}")
    from mlnb.tune import study_storage
    import optuna
    server = PostgresServer()
    try:
        uri = study_storage(None, server.uri)
        assert uri.startswith("postgresql+psycopg://")
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:   # fork after OpenMP can hang
            list(pool.map(_worker, [uri, uri], [tmp_path, tmp_path], timeout=300))
        study = optuna.load_study(study_name="shared", storage=uri)
        finished = [t for t in study.trials if t.state.is_finished()]
        assert 6 <= len(finished) <= 7                                            # a trial in flight may finish past the budget
        assert len({t.user_attrs["worker"] for t in finished}) == 2               # both workers ran trials
    finally: server.stop()
