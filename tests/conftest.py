"""Shared fixtures: a small project folder and one real pipeline run through the `mlnb` CLI.

Everything runs the installed console script in a subprocess, the way a user does, with HOME
pointed at an empty folder so the tests can prove nothing is written outside the project.
"""
import json, os, subprocess, sys, time
from pathlib import Path
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MLNB = Path(sys.executable).parent/"mlnb"

SMALL = {"data": {"synthetic": {"rows": 3000}}, "validate": {"min_rows": 100},
         "train": {"num_boost_round": 200, "num_threads": 1, "folds": 3}, "tune": {"n_trials": 3},
         "evaluate": {"shap_rows": 200}, "deploy": {"smoke_rows": 50}}

def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items(): out[k] = merge(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out

def write_config(folder: Path, **sections) -> Path:
    "The repo's mlnb.yaml made small, with `sections` merged in, saved in `folder`."
    cfg = merge(merge(yaml.safe_load((ROOT/"mlnb.yaml").read_text()), SMALL), sections)
    path = folder/"mlnb.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path

@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    "An empty HOME for every CLI call."
    return tmp_path_factory.mktemp("home")

@pytest.fixture(scope="session")
def cli(home):
    "Run `mlnb ARGS` in a folder; returns CompletedProcess with text output."
    def run(*args, cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
        e = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
        e.update(HOME=str(home), MPLCONFIGDIR=str(home/".mpl"), PYTHONUNBUFFERED="1", **(env or {}))
        return subprocess.run([str(MLNB), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=e, stdin=subprocess.DEVNULL)
    return run

@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    "A project folder holding a small mlnb.yaml (data, runs and registry are created inside it)."
    folder = tmp_path_factory.mktemp("project")
    write_config(folder)
    return folder

@pytest.fixture(scope="session")
def first_run(project, cli):
    "One complete pipeline run (`mlnb run --run-id first`): (run folder, run.json, CLI result, seconds)."
    t = time.perf_counter()
    res = cli("run", "--run-id", "first", cwd=project)
    seconds = time.perf_counter() - t
    assert res.returncode == 0, f"mlnb run failed:\n{res.stdout}\n{res.stderr}"
    run_dir = project/"runs"/"first"
    return run_dir, json.loads((run_dir/"run.json").read_text()), res, seconds

def load_run(project: Path, run_id: str) -> dict:
    return json.loads((project/"runs"/run_id/"run.json").read_text())

def run_id_of(res: subprocess.CompletedProcess) -> str:
    "The run id a `mlnb run` printed on its first line."
    return res.stdout.split()[1].rstrip(":")
