"The runner end to end: a cold run, the run record, cache hits, --force, --steps, failure, --resume, the gate."
import json, re, time
from pathlib import Path
import pytest
from conftest import load_run, run_id_of
from mlnb.core import folder_digests, sha256_file
from mlnb.steps import STEP_NAMES

def test_cold_run_record(first_run):
    run_dir, rec, res, _ = first_run
    assert rec["status"] == "ok" and rec["finished"]
    assert list(rec["steps"]) == list(STEP_NAMES)
    for name, s in rec["steps"].items():
        assert s["status"] == "ok", name
        assert len(s["fingerprint"]) == 64 and s["duration_s"] > 0
        assert (run_dir/s["notebook"]).is_file(), f"{name}: executed notebook missing"
        assert s["outputs"] == folder_digests(run_dir/name), f"{name}: recorded output digests do not match the files"
        assert s["wandb"]["status"] == "logged" and s["wandb"]["id"]
        assert f"{name}" in res.stdout
    # inputs are exactly the upstream outputs
    outs = rec["steps"]["02_features"]["outputs"]
    assert rec["steps"]["03_train"]["inputs"] == {f"02_features/{f}": outs[f] for f in ("train.parquet", "valid.parquet", "preprocessing.json", "split.json")}
    assert rec["config"]["tune"]["n_trials"] == 3

def test_run_outputs(first_run, project):
    run_dir, rec, _, _ = first_run
    manifest = json.loads((run_dir/"00_data"/"manifest.json").read_text())
    assert manifest["sha256"] == sha256_file(run_dir/"00_data"/"snapshot.parquet")
    assert "email" not in manifest["columns"] and "phone" not in manifest["columns"]
    for split in ("train", "valid", "test"): assert (run_dir/"02_features"/f"{split}.parquet").is_file()
    assert json.loads((run_dir/"05_evaluate"/"gate.json").read_text())["passed"] is True
    for plot in ("roc", "shap_summary"): assert (run_dir/"05_evaluate"/"plots"/f"{plot}.png").stat().st_size > 1000
    version = project/"registry"/"churn"/"v1"
    assert sorted(p.name for p in version.iterdir()) == ["Dockerfile", "checksums.json", "metadata.json", "mlnb-0.1.0-py3-none-any.whl", "model.onnx", "model.txt",
                                                            "model_card.md", "preprocessing.json", "reference.json", "requirements.txt", "signature.json"]
    assert not list(version.rglob("*.pkl")) and not list(version.rglob("*.pickle"))
    assert json.loads((project/"registry"/"churn"/"aliases.json").read_text()) == {"production": "v1"}
    meta = json.loads((version/"metadata.json").read_text())
    assert meta["run_id"] == "first" and meta["data"]["sha256"] == manifest["sha256"] and meta["features"]
    deploy = json.loads((run_dir/"07_deploy"/"deploy.json").read_text())
    assert deploy["smoke"]["checks"] == dict.fromkeys(("health", "ready", "unauthorized", "forbidden", "parity", "rejects_bad_input"), True)
    assert deploy["smoke"]["logged_rows"] == deploy["smoke"]["rows"] > 0

def test_cached_rerun_reuses_every_step(first_run, project, cli):
    _, _, _, cold = first_run
    t = time.perf_counter()
    res = cli("run", cwd=project)
    warm = time.perf_counter() - t
    assert res.returncode == 0, res.stdout + res.stderr
    rec = load_run(project, run_id_of(res))
    reused = [n for n, s in rec["steps"].items() if s["status"] == "reused"]
    assert reused == list(STEP_NAMES[:-1]), "every cacheable step (all but 07_deploy) should be reused"
    assert rec["steps"]["07_deploy"]["status"] == "ok"
    assert res.stdout.count("reused  from run") == 7
    for n in reused:
        assert rec["steps"][n]["outputs"] == folder_digests(project/"runs"/rec["run_id"]/n)
    assert warm < cold, f"a cached re-run ({warm:.1f}s) should be faster than the cold run ({cold:.1f}s)"

def test_force_reruns_and_override_invalidates(first_run, project, cli):
    res = cli("run", "--steps", "03", "--force", cwd=project)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = load_run(project, run_id_of(res))
    assert rec["steps"]["03_train"]["status"] == "ok"
    assert rec["steps"]["00_data"]["status"] == rec["steps"]["02_features"]["status"] == "reused"
    assert rec["steps"]["01_validate"]["status"] in ("ok", "reused")      # validated (again) before anything is trained
    assert rec["steps"]["04_tune"]["status"] == "pending"
    assert not re.search(r"^\[\d+/\d+\] 03_train +\d+s  ", res.stdout, re.M), res.stdout   # shorter than $MLNB_PROGRESS_SECONDS (30): no progress line
    lines = res.stdout.splitlines()                    # ... but its closing line (what it found) follows its "done"
    done = next(i for i, l in enumerate(lines) if re.match(r"\[\d+/\d+\] 03_train +done ", l))
    assert re.match(r"\[\d+/\d+\] 03_train +CV roc_auc 0\.\d{4} over 3 folds", lines[done + 1]), res.stdout
    res = cli("run", "--steps", "02-04", "-p", "tune.n_trials=2", cwd=project, env={"MLNB_PROGRESS_SECONDS": "0"})
    assert res.returncode == 0, res.stdout + res.stderr
    rec = load_run(project, run_id_of(res))
    assert [rec["steps"][n]["status"] for n in ("02_features", "03_train", "04_tune")] == ["reused", "reused", "ok"]
    progress = re.findall(r"^\[\d+/\d+\] 04_tune +\d+s  (trial \d): ", res.stdout, re.M)   # what the step prints, as it runs
    assert progress == ["trial 1", "trial 2"], res.stdout

def test_steps_without_cache_say_what_to_include(cli, tmp_path):
    from conftest import write_config
    write_config(tmp_path)
    res = cli("run", "--steps", "03", cwd=tmp_path)
    assert res.returncode == 1
    assert "step 00_data is needed by the chosen steps but has no cached result" in res.stdout
    assert "--steps 00-03" in res.stdout

def test_failure_then_resume(project, cli, tmp_path):
    blocker = tmp_path/"registry"
    blocker.write_text("not a folder")                       # step 06 cannot create the registry here
    res = cli("run", "-p", f"package.registry={blocker}", "--run-id", "broken", cwd=project)
    assert res.returncode == 1
    run_dir = project/"runs"/"broken"
    notebook = run_dir/"06_package"/"06_package.ipynb"
    assert "FAILED" in res.stdout and f"step 06_package, cell" in res.stdout and str(notebook) in res.stdout
    assert "NotADirectoryError" in res.stdout or "FileExistsError" in res.stdout
    assert "mlnb run --resume broken" in res.stdout
    assert notebook.is_file(), "the executed notebook of the failed step must be kept"
    rec = load_run(project, "broken")
    assert rec["status"] == "failed" and rec["steps"]["06_package"]["status"] == "failed"
    assert rec["steps"]["06_package"]["error"]["cell"] is not None
    assert rec["steps"]["07_deploy"]["status"] == "pending"
    before = {n: rec["steps"][n]["finished"] for n in STEP_NAMES[:6]}
    ran = next(n for n in STEP_NAMES[:6] if rec["steps"][n]["status"] == "ok")
    rec["steps"][ran]["wandb"]["status"] = "queued"             # as if Ctrl-C had cut its W&B logging short
    (run_dir/"run.json").write_text(json.dumps(rec))
    blocker.unlink()
    res = cli("run", "--resume", "broken", cwd=project)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = load_run(project, "broken")
    assert rec["steps"][ran]["wandb"]["status"] == "logged", rec["steps"][ran]["wandb"]   # the resumed run logs it
    assert rec["status"] == "ok" and rec["resumed"] == 1
    assert {n: rec["steps"][n].get("finished") for n in STEP_NAMES[:6]} == before, "steps before the failure must not re-run"
    assert rec["steps"]["06_package"]["status"] == rec["steps"]["07_deploy"]["status"] == "ok"
    assert json.loads((blocker/"churn"/"aliases.json").read_text()) == {"production": "v1"}

def test_ctrl_c_marks_the_run_interrupted(first_run, project, home):
    "SIGINT while a step runs: that step and the run are 'interrupted' in run.json, the kernel is stopped, and the output is two plain lines."
    import os, shutil, signal, subprocess
    from conftest import MLNB
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}, "HOME": str(home), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([str(MLNB), "run", "--run-id", "ctrl-c", "-p", "tune.n_trials=5000"], cwd=project, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    record = project/"runs"/"ctrl-c"/"run.json"
    try:
        for _ in range(600):                                   # until step 04 (re-run for the new trial budget) is running
            if record.is_file() and json.loads(record.read_text())["steps"]["04_tune"]["status"] == "running": break
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None: proc.kill()
    rec = json.loads(record.read_text())
    assert proc.returncode == 130 and rec["status"] == "interrupted" and rec["steps"]["04_tune"]["status"] == "interrupted", out
    assert rec["steps"]["05_evaluate"]["status"] == "pending" and rec["finished"]
    assert "run ctrl-c interrupted; continue with: mlnb run --resume ctrl-c" in out and "mlnb run: interrupted" in out
    assert "Traceback" not in out and "Kernel died" not in out, out
    shutil.rmtree(project/"runs"/"ctrl-c")

def test_failed_gate_keeps_production(first_run, project, cli):
    aliases = project/"registry"/"churn"/"aliases.json"
    before = aliases.read_text()
    res = cli("run", "-p", "evaluate.min_improvement=0.9", "-p", "tune.n_trials=2", cwd=project)
    assert res.returncode == 1
    assert "failed its quality gate" in res.stdout and "production stays v1" in res.stdout
    assert "evaluate.min_improvement" in res.stdout.split("or change the bar (")[1].split(")")[0]     # the fix names the setting behind the bar
    assert "a resumed run keeps its recorded config" in res.stdout and "start a new `mlnb run` instead" in res.stdout
    assert aliases.read_text() == before
    rec = load_run(project, run_id_of(res))
    assert rec["steps"]["05_evaluate"]["summary"]["gate"]["passed"] is False
    assert rec["steps"]["07_deploy"]["status"] == "failed"

def test_cache_survives_an_equivalent_newer_upstream_result(first_run, project, cli):
    "Re-running step 00 alone makes a newer, byte-identical snapshot: downstream steps must still be reused."
    res = cli("run", "--steps", "00", "--force", cwd=project)
    assert res.returncode == 0, res.stdout + res.stderr
    res = cli("run", cwd=project)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = load_run(project, run_id_of(res))
    assert [n for n, s in rec["steps"].items() if s["status"] == "reused"] == list(STEP_NAMES[:-1])

def _tiny_step(monkeypatch, *sources):
    "Make the pipeline execute a notebook of these code cells (after a parameters cell) for any step."
    import mlnb.runner as R
    cells = [dict(cell_type="code", id=f"c{i}", metadata=dict(tags=["parameters"]) if i == 0 else {}, execution_count=None, outputs=[], source=s)
             for i, s in enumerate(("config_path = None\nrun_dir = None", *sources))]
    nb = dict(nbformat=4, nbformat_minor=5, cells=cells, metadata=dict(kernelspec=dict(name="python3", display_name="Python 3", language="python")))
    monkeypatch.setattr(R, "pipeline_notebook", lambda step: nb)
    return R

@pytest.mark.timeout(120)
def test_a_kernel_that_dies_fails_the_step_at_once_naming_the_cell(tmp_path, monkeypatch):
    from mlnb.steps import get_step
    R = _tiny_step(monkeypatch, "print('before')", "import os\nos._exit(3)", "print('never')")
    t = time.perf_counter()
    with pytest.raises(R.StepFailed) as e: R.execute_step(get_step("03_train"), tmp_path/"config.yaml", tmp_path)
    assert time.perf_counter() - t < 60, "a dead kernel must fail the step, not hang the run"
    out = tmp_path/"03_train"/"03_train.ipynb"
    assert e.value.cell == 4 and "DeadKernelError" in e.value.error      # cells: parameters, injected parameters, print, exit
    msg = str(e.value)
    assert f"step 03_train, cell 4 of {out}" in msg and "in: import os" in msg and str(tmp_path/"kernels.log") in msg
    cells = json.loads(out.read_text())["cells"]                         # the notebook as far as it got
    assert "before" in json.dumps(cells[2]["outputs"])
    assert not cells[4]["outputs"] and not cells[4]["metadata"]["papermill"]["start_time"]

@pytest.mark.timeout(120)
def test_the_executed_notebook_is_written_once(tmp_path, monkeypatch):
    "papermill would rewrite it before and after every cell; the runner writes it when the step ends."
    import papermill.engines, papermill.execute
    from mlnb.steps import get_step
    R = _tiny_step(monkeypatch, *[f"x = {i}" for i in range(10)], "print(x)")
    writes = []
    for mod in (papermill.engines, papermill.execute):
        monkeypatch.setattr(mod, "write_ipynb", lambda nb, path, write=mod.write_ipynb: (writes.append(path), write(nb, path)))
    out = R.execute_step(get_step("03_train"), tmp_path/"config.yaml", tmp_path)
    assert writes == [str(out)]
    cells = json.loads(out.read_text())["cells"]
    assert "".join(cells[-1]["outputs"][0]["text"]) == "9\n" and R.cell_seconds(out) > 0
