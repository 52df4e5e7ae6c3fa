"W&B: one offline run per step, grouped by the pipeline run, read back from the binary log."
from pathlib import Path
from mlnb.steps import STEP_NAMES
from mlnb.tracking import read_wandb_log, wandb_logs

def test_wandb_logs_match_run_json(first_run):
    run_dir, rec, _, _ = first_run
    logs = wandb_logs(run_dir)
    for name in STEP_NAMES:
        step = rec["steps"][name]
        log = read_wandb_log(logs[step["wandb"]["id"]])
        assert (log["group"], log["job_type"], log["project"]) == ("first", name, "mlnb")
        assert {k: log["summary"][k] for k in step["metrics"]} == step["metrics"], name
        assert log["config"]["pipeline_run"] == "first" and log["config"]["config"]["seed"] == rec["config"]["seed"]
        assert log["exit_code"] == 0

def test_wandb_logs_plots_tables_and_model(first_run):
    run_dir, rec, _, _ = first_run
    logs = wandb_logs(run_dir)
    evaluate = read_wandb_log(logs[rec["steps"]["05_evaluate"]["wandb"]["id"]])
    assert {"plots/roc", "plots/shap_summary", "tables/test_metrics"} <= {k.split("/")[0] + "/" + k.split("/")[1] for k in evaluate["summary"] if k.count("/") >= 1}
    tune = read_wandb_log(logs[rec["steps"]["04_tune"]["wandb"]["id"]])
    assert {"name": "model", "type": "model"} in tune["artifacts"]
    package = read_wandb_log(logs[rec["steps"]["06_package"]["wandb"]["id"]])
    assert {"name": "churn", "type": "model"} in package["artifacts"]

def test_wandb_files_stay_in_the_run_folder(first_run, home):
    run_dir, _, _, _ = first_run
    assert (run_dir/"wandb"/"wandb").is_dir()
    strays = [p for p in Path(home).rglob("*") if "wandb" in p.name.lower()]
    assert strays == [], f"W&B wrote outside the run folder: {strays}"
