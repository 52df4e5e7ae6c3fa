"Bad input at the command line: one clear message, a non-zero exit, and nothing created."
import json, time
from pathlib import Path
import pytest
from conftest import write_config

def files_in(folder: Path) -> set:
    return {p.relative_to(folder) for p in folder.rglob("*")}

def test_help_is_fast(cli, tmp_path):
    t = time.perf_counter()
    res = cli("--help", cwd=tmp_path)
    assert res.returncode == 0 and "run" in res.stdout and "serve" in res.stdout
    assert time.perf_counter() - t < 5, "the CLI should not import the heavy stack just to parse arguments"

def test_missing_config(cli, tmp_path):
    res = cli("run", "-c", "nope.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert "nope.yaml: config file not found" in res.stderr and "Traceback" not in res.stderr
    assert files_in(tmp_path) == set()

@pytest.mark.parametrize("text, expected", [
    ("train:\n  num_leaves: 63\n    learning_rate: 0.1\n", "not valid YAML at line 3"),
    ("train:\n  num_leaves: many\n", "'train.num_leaves' (line 2): Input should be a valid integer"),
    ("train:\n  num_leafs: 63\n", "unknown key 'train.num_leafs' (line 2): did you mean 'num_leaves'?"),
    ("trian:\n  num_leaves: 63\n", "unknown key 'trian' (line 1): did you mean 'train'?"),
    ("data:\n  sources:\n    - {name: x, kind: xls, path: a.xls}\n", "'data.sources.0.kind' (line 3)"),
    ("- just\n- a list\n", "the top level must be a mapping"),
])
def test_bad_config(cli, tmp_path, text, expected):
    (tmp_path/"mlnb.yaml").write_text(text)
    res = cli("run", cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert expected in res.stderr and "Traceback" not in res.stderr
    assert files_in(tmp_path) == {Path("mlnb.yaml")}, "nothing may be created for a bad config"

def test_all_problems_reported_at_once(cli, tmp_path):
    (tmp_path/"mlnb.yaml").write_text("seed: x\ntune:\n  n_trials: 0\ntrain:\n  num_leafs: 3\n")
    res = cli("run", cwd=tmp_path)
    assert res.returncode == 2
    assert all(s in res.stderr for s in ("'seed' (line 1)", "'tune.n_trials' (line 3)", "unknown key 'train.num_leafs' (line 5)"))

@pytest.mark.parametrize("args, expected", [
    (["-p", "train.num_leaves"], "not of the form key=value"),
    (["-p", "train.num_leaves=lots"], "(from -p train.num_leaves=lots)"),
    (["-p", "train.nope=1"], "unknown key 'train.nope'"),
    (["--steps", "09"], "unknown step '09'"),
    (["--steps", "05-02"], "runs backwards"),
    (["--resume", "no-such-run"], "no run 'no-such-run'"),
])
def test_bad_arguments(cli, tmp_path, args, expected):
    write_config(tmp_path)
    res = cli("run", *args, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert expected in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path/"runs").exists() and not (tmp_path/"data").exists()

def test_unknown_model_reference(cli, tmp_path):
    res = cli("serve", "churn@production", "--registry", tmp_path/"registry", cwd=tmp_path)
    assert res.returncode == 2 and "no model 'churn' in the registry" in res.stderr and "(no such folder)" in res.stderr
    (tmp_path/"registry"/"churn").mkdir(parents=True)
    res = cli("serve", "churn@production", "--registry", tmp_path/"registry", cwd=tmp_path)
    assert res.returncode == 2 and "has no 'production' alias yet" in res.stderr
    res = cli("serve", "nope@production", "--registry", tmp_path/"registry", cwd=tmp_path)
    assert res.returncode == 2 and "no model 'nope'" in res.stderr and "models there: churn" in res.stderr

def test_models_lists_versions(cli, first_run, project):
    res = cli("models", cwd=project)
    assert res.returncode == 0
    assert "churn  (production=v1)" in res.stdout and "v1" in res.stdout and "gate passed" in res.stdout

def test_models_show_and_audit_after_a_run(cli, first_run, project):
    res = cli("models", "churn", cwd=project)   # `mlnb models [NAME]` still lists
    assert res.returncode == 0 and "churn  (production=v1)" in res.stdout
    res = cli("models", "show", "churn@production", cwd=project)
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    lineage = shown["lineage"]
    assert lineage["run_id"] == "first" and lineage["data_snapshot"] and lineage["feature_versions"] and "git_commit" in lineage
    assert shown["onnx"]["exported"] and shown["onnx"]["parity"]["max_abs_diff"] <= 1e-5, shown["onnx"]
    res = cli("models", "audit", "churn", "--verify", cwd=project)
    assert res.returncode == 0 and "audit log intact" in res.stdout and "register version=v1" in res.stdout
