"The pipeline by config alone on scikit-learn's bundled data sets: binary, multiclass and regression."
import json
import polars as pl
import pytest
import yaml
from sklearn import datasets

CASES = {"breast_cancer": ("binary", "roc_auc"), "wine": ("multiclass", "log_loss"), "diabetes": ("regression", "rmse")}
# On these small, nearly linear data sets the logistic/linear baseline is as good as LightGBM or better (breast_cancer:
# test AUC 1.0 vs 0.999; diabetes: RMSE 58 vs 59), so the beat-the-baseline gate would rightly refuse them. A user in
# that situation reports the comparison without gating on it, which is what these configs do.
REPORT_ONLY = {"breast_cancer", "diabetes"}

def export_csv(name, folder):
    "The data set as a CSV file with an id column, the way a user's own data would arrive."
    bunch = getattr(datasets, f"load_{name}")(as_frame=False)
    df = pl.DataFrame(bunch.data, schema=[str(c) for c in bunch.feature_names]).with_columns(target=pl.Series(bunch.target))
    df = df.with_row_index("row_id", offset=1)
    df.write_csv(folder/f"{name}.csv")
    return df

@pytest.mark.parametrize("name", list(CASES))
def test_pipeline_on_sklearn_data(name, cli, tmp_path):
    df = export_csv(name, tmp_path)
    config = {"project": name.replace("_", " ").title(), "data": {"target": "target", "id_column": "row_id", "time_column": None, "pii": [], "synthetic": None,
                                        "sources": [{"name": name, "kind": "csv", "path": f"{name}.csv"}]},
              "validate": {"min_rows": 100, "ranges": {}}, "features": {"derived": {}},
              "train": {"num_threads": 1, "min_child_samples": 5}, "tune": {"n_trials": 3},
              "evaluate": {"shap_rows": 50, "baseline_gate": name not in REPORT_ONLY}, "deploy": {"smoke_rows": 20}}
    (tmp_path/"mlnb.yaml").write_text(yaml.safe_dump(config))
    res = cli("run", "--run-id", "r", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = json.loads((tmp_path/"runs"/"r"/"run.json").read_text())
    task, metric = CASES[name]
    assert rec["steps"]["02_features"]["summary"]["task"] == task
    gate = rec["steps"]["05_evaluate"]["summary"]["gate"]
    assert gate["passed"] and gate["metric"] == metric
    assert {n: s["wandb"]["status"] for n, s in rec["steps"].items()} == dict.fromkeys(rec["steps"], "logged")   # every task's metrics reach W&B
    full = json.loads((tmp_path/"runs"/"r"/"05_evaluate"/"gate.json").read_text())
    assert "baseline" in full["gates"], "the baseline comparison is always computed and reported"
    version = tmp_path/"registry"/name.replace("_", "-")/"v1"          # the model is named after the project ("Breast Cancer")
    signature = json.loads((version/"signature.json").read_text())
    assert [c["name"] for c in signature["inputs"]] == [c for c in df.columns if c not in ("row_id", "target")]
    deploy = json.loads((tmp_path/"runs"/"r"/"07_deploy"/"deploy.json").read_text())
    assert all(deploy["smoke"]["checks"].values())
