"""The registry at the command line (promote, rollback, diff, show, audit and tampering), and the model package
installed into a fresh virtual environment outside the repository, serving over HTTP."""
import json, os, shutil, subprocess, sys, time
from pathlib import Path
from types import SimpleNamespace
import httpx, lightgbm as lgb, numpy as np, polars as pl
import pytest
from conftest import ROOT
from mlnb.cli import main
from mlnb.core import MlnbError, save_json
from mlnb.features import Preprocessor
from mlnb.registry import ModelPackage, audit_problems, build_package, register, seal, set_alias, signature
from mlnb.serve import free_port

def rows(n: int = 400, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(45, 12, n).round(1)
    plan = rng.choice(["basic", "plus", "premium"], n)
    y = ((age > 45) ^ (plan == "premium") ^ (rng.random(n) < 0.1)).astype(int)
    return pl.DataFrame({"plan": plan, "age": age, "visits": rng.poisson(3, n), "y": y})

def add_version(reg: Path, work: Path, rounds: int, passed: bool, snapshot: str, package: bool) -> str:
    "Train a toy binary model, build its package (or only its core files) and register it; returns the version."
    work.mkdir(parents=True)
    train = rows()
    pre = Preprocessor("y", rare_min_count=1).fit(train)
    params = dict(objective="binary", verbosity=-1, min_data_in_leaf=10, num_leaves=7 + rounds, num_threads=1)
    lgb.train(params, lgb.Dataset(pre.transform(train).to_numpy(), train["y"].to_numpy()), rounds).save_model(work/"model.txt")
    sig = signature(pre, "binary", [0, 1], "y")
    if package: files, onnx = build_package(work/"pkg", work/"model.txt", pre, sig, train.head(200))
    else:
        save_json(pre.to_dict(), work/"preprocessing.json"); save_json(sig, work/"signature.json")
        files, onnx = {n: work/n for n in ("model.txt", "preprocessing.json", "signature.json")}, dict(exported=False, reason="not built in this test")
    auc = round(0.7 + rounds / 100, 4)
    meta = dict(run_id=f"run-{rounds}", task="binary", target="y", params=params, metrics=dict(roc_auc=auc), baseline_metrics=dict(roc_auc=0.6),
                gate=dict(passed=passed, metric="roc_auc", model=auc, reason="beats the baseline" if passed else "worse than the baseline"),
                onnx=onnx, data=dict(snapshot=snapshot, rows=train.height), features=pre.versions_, git_commit="abc123",
                lineage=dict(run_id=f"run-{rounds}", data_snapshot=snapshot, feature_versions=pre.versions_, git_commit="abc123"))
    return register(reg, "toy", files, meta, actor="ci")[0]

@pytest.fixture(scope="module")
def base_registry(tmp_path_factory) -> Path:
    "toy v1 (gate passed), v2 (passed), v3 (failed); no aliases yet."
    base = tmp_path_factory.mktemp("registry")
    versions = [add_version(base/"registry", base/f"w{i}", r, ok, f"snap{i}", i == 0) for i, (r, ok) in enumerate([(10, True), (20, True), (5, False)])]
    assert versions == ["v1", "v2", "v3"]
    return base/"registry"

@pytest.fixture
def reg(base_registry, tmp_path) -> Path:
    "A private copy of the toy registry."
    shutil.copytree(base_registry, tmp_path/"registry")
    return tmp_path/"registry"

@pytest.fixture
def models(reg, capsys, monkeypatch):
    "`mlnb models ARGS --registry REG` in-process (the console script only adds the interpreter's start-up): exit code and output."
    def run(*args, user: str = "ann"):
        monkeypatch.setenv("MLNB_USER", user)
        capsys.readouterr()
        code = main(["models", *map(str, args), "--registry", str(reg)])
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)
    return run

def test_package_contents(base_registry):
    v1 = base_registry/"toy"/"v1"
    names = sorted(p.name for p in v1.iterdir())
    assert names == sorted(["Dockerfile", "checksums.json", "metadata.json", "model.onnx", "model.txt", "model_card.md", "preprocessing.json",
                            "requirements.txt", "signature.json", "mlnb-0.1.0-py3-none-any.whl"])
    assert not list(v1.rglob("*.pkl"))
    meta = json.loads((v1/"metadata.json").read_text())
    parity = meta["onnx"]["parity"]
    assert meta["onnx"]["exported"] and parity["passed"] and parity["max_abs_diff"] <= 1e-5 and parity["rows"] == 200
    sig = json.loads((v1/"signature.json").read_text())
    assert [c["name"] for c in sig["inputs"]] == ["plan", "age", "visits"] and sig["unseen_categories"] == "map"
    assert sorted(sig["inputs"][0]["categories"]) == ["basic", "plus", "premium"]
    assert [o["name"] for o in sig["outputs"]] == ["prediction", "probability"]
    pins = [l for l in (v1/"requirements.txt").read_text().splitlines() if not l.startswith("#")]
    assert all("==" in p for p in pins) and {"lightgbm", "polars", "fastapi", "uvicorn", "numpy"} <= {p.split("==")[0] for p in pins}
    assert "CMD [\"mlnb\", \"serve\", \"/model\"" in (v1/"Dockerfile").read_text()

def test_promote_needs_a_passed_gate(models, reg):
    res = models("promote", "toy", "v3")
    assert res.returncode == 2 and "did not pass its quality gate (worse than the baseline)" in res.stderr
    res = models("promote", "toy", "v3", "--force")
    assert res.returncode == 2 and "needs a reason" in res.stderr
    assert not (reg/"toy"/"aliases.json").exists()
    res = models("promote", "toy", "v3", "--force", "--reason", "hotfix INC-7", user="bob")
    assert res.returncode == 0, res.stderr
    last = json.loads((reg/"toy"/"audit.jsonl").read_text().splitlines()[-1])
    assert (last["action"], last["version"], last["actor"], last["forced"], last["gate_passed"], last["reason"]) == ("set_alias", "v3", "bob", True, False, "hotfix INC-7")

def test_rollback_restores_previous_production(models, reg):
    for v in ("v1", "v2"): assert models("promote", "toy", v, "--reason", "better").returncode == 0
    assert models("promote", "toy", "v1", "--alias", "staging").returncode == 0
    res = models("rollback", "toy")
    assert res.returncode == 0 and "v2 -> v1" in res.stdout
    assert json.loads((reg/"toy"/"aliases.json").read_text()) == {"production": "v1", "staging": "v1"}
    res = models("rollback", "toy")
    assert res.returncode == 2 and "no earlier production version" in res.stderr
    res = models("list")
    assert "toy  (production=v1, staging=v1)" in res.stdout and "gate failed" in res.stdout
    assert models().stdout == res.stdout == models("toy").stdout, "`mlnb models [NAME]` still lists"

def test_model_at_version_stands_for_the_two_words(models, reg):
    "serve, predict and show write MODEL@VERSION; promote, rollback, audit and reproduce take it too."
    assert models("promote", "toy@v1", "--reason", "first").returncode == 0
    assert models("promote", "toy@v2", "--alias", "staging").returncode == 0
    assert models("promote", "toy@v1", "--alias", "staging").returncode == 0
    res = models("rollback", "toy@staging")
    assert res.returncode == 0 and "toy@staging rolled back: v1 -> v2" in res.stdout, res.stdout + res.stderr
    assert json.loads((reg/"toy"/"aliases.json").read_text()) == {"production": "v1", "staging": "v2"}
    assert models("audit", "toy@v2").stdout == models("audit", "toy", "v2").stdout
    for args, message in [(["promote", "toy"], "which version of toy?"), (["promote", "toy@v1", "v2"], "toy@v1 names v1 already, and v2 names another"),
                          (["rollback", "toy@staging", "--alias", "production"], "toy@staging names staging already")]:
        res = models(*args)
        assert res.returncode == 2 and message in res.stderr, res.stderr
    assert json.loads((reg/"toy"/"aliases.json").read_text()) == {"production": "v1", "staging": "v2"}, "a refused command changed nothing"

def test_show_and_diff(models):
    shown = json.loads(models("show", "toy@v2").stdout)
    assert shown["lineage"] == {**shown["lineage"], "run_id": "run-20", "data_snapshot": "snap1", "git_commit": "abc123"}
    assert shown["registered"]["actor"] == "ci" and shown["aliases"] == []
    assert json.loads(models("show", "toy").stdout)["version"] == "v3", "MODEL alone: production, else the newest version"
    assert models("show", "toy", "v2").stdout == models("show", "toy@v2").stdout, "`show MODEL VERSION`, as promote and diff take it"
    shown = json.loads(models("show", "toy@v1").stdout)
    assert shown["onnx"]["parity"]["passed"] and "model.onnx" in shown["files"]
    res = models("diff", "toy", "v1", "v2")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "metric  roc_auc: 0.8 -> 0.9" in out and "(+0.1000)" in out
    assert "params  num_leaves: 17 -> 27" in out and "data    snapshot: \"snap0\" -> \"snap1\"" in out and "features added -" in out
    for args in (["toy@v1", "v2"], ["toy@v1", "toy@v2"], ["toy", "v1", "toy@v2"]):
        assert models("diff", *args).stdout == out, f"`diff {' '.join(args)}` is `diff toy v1 v2`"
    for args, message in [(["toy@v1"], "two versions of toy, and 1 was given"), (["toy", "v1", "v2", "v3"], "and 3 were given"),
                          (["toy@v1", "other@v2"], "toy and other are two models")]:
        res = models("diff", *args)
        assert res.returncode == 2 and message in res.stderr and not res.stdout, (args, res.stderr)

@pytest.mark.parametrize("args, message", [
    (["show", "../toy@v1"], "not a valid model name"),
    (["show", "toy@../../etc"], "is not an alias"),
    (["promote", "toy", "../v1"], "not a version like v3"),
    (["promote", "/etc", "v1"], "not a valid model name"),
    (["diff", "toy", "v1", "v1/../v2"], "is not an alias"),
    (["rollback", "to/y"], "not a valid model name"),
    (["show", "toy", "../../etc"], "is not an alias"),
    (["show", "toy@v1", "v2"], "toy@v1 names v1 already, and v2 names another"),
])
def test_names_cannot_escape_the_registry(models, reg, args, message):
    before = sorted(p.relative_to(reg.parent) for p in reg.parent.rglob("*"))
    res = models(*args)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    assert sorted(p.relative_to(reg.parent) for p in reg.parent.rglob("*")) == before

def test_an_extra_argument_names_its_command(models, capsys):
    "argparse would name `mlnb` and show its usage; the error names the command the argument was given to."
    with pytest.raises(SystemExit) as e: models("audit", "toy", "v1", "v2")
    err = capsys.readouterr().err
    assert e.value.code == 2 and "mlnb models audit: error: unrecognized arguments: v2" in err and "usage: mlnb models audit" in err, err

def test_corrupted_version_is_refused(models, reg):
    with open(reg/"toy"/"v1"/"model.txt", "a") as f: f.write("\n")
    res = models("show", "toy@v1")
    assert res.returncode == 2 and "integrity check" in res.stderr and "model.txt: sha256 differs" in res.stderr
    assert "v1    INTEGRITY CHECK FAILED: model package failed its integrity check (model.txt: sha256 differs)" in models("list").stdout
    res = models("promote", "toy", "v1")
    assert res.returncode == 2 and "model.txt: sha256 differs" in res.stderr

def test_an_alias_moved_by_hand_is_refused(models, reg):
    "aliases.json is held to the audit log wherever an alias is resolved: serving, predicting, showing; the listing warns."
    set_alias(reg, "toy", "production", "v1", reason="first")
    (reg/"toy"/"aliases.json").write_text('{"production": "v3"}')        # v3 failed its gate and was never promoted
    assert "WARNING: aliases.json is not what the audit log records {'production': 'v1'}" in models("list").stdout
    res = models("show", "toy@production")
    assert res.returncode == 2 and "aliases.json says toy@production is v3, but the audit log records v1" in res.stderr, res.stderr
    assert models("show", "toy@v1").returncode == 0                        # a version named outright is not an alias: still served

def _edit(lines): lines[1] = lines[1].replace('"ci"', '"mallory"'); return lines
def _delete(lines): return lines[:1] + lines[2:]
def _reorder(lines): return [lines[0], lines[2], lines[1], *lines[3:]]
def _truncate(lines): return lines[:-1]

@pytest.mark.parametrize("tamper, message", [
    (_edit, "line 2: its content does not match its hash"),
    (_delete, "line 2: does not chain to the line before it"),
    (_reorder, "line 2: does not chain to the line before it"),
    (_truncate, "head records entry 4"),
    ("aliases", "aliases.json {'production': 'v3'} is not what the log records {'production': 'v1'}"),
    ("reseal", "v2: checksums.json is not the one recorded at registration"),
])
def test_audit_detects_tampering(reg, tamper, message):
    set_alias(reg, "toy", "production", "v1", reason="first")
    assert audit_problems(reg/"toy") == []
    log = reg/"toy"/"audit.jsonl"
    if tamper == "aliases": (reg/"toy"/"aliases.json").write_text('{"production": "v3"}')
    elif tamper == "reseal": (reg/"toy"/"v2"/"model.txt").write_text((reg/"toy"/"v3"/"model.txt").read_text()); seal(reg/"toy"/"v2")
    else: log.write_text("\n".join(tamper(log.read_text().splitlines())) + "\n")
    assert any(message in p for p in audit_problems(reg/"toy")), audit_problems(reg/"toy")
    with pytest.raises(MlnbError, match="fails verification"): set_alias(reg, "toy", "staging", "v2", reason="no change on a tampered history")

def test_cli_promote_rollback_audit(cli, reg):
    "The console script end to end: promote, roll back in one command, verify; then an edited log fails `--verify` (exit 1)."
    run = lambda *args: cli("models", *args, "--registry", reg, cwd=reg.parent, env={"MLNB_USER": "ops"})
    assert run("promote", "toy", "v1").returncode == 0 and run("promote", "toy", "v2", "--reason", "better").returncode == 0
    res = run("rollback", "toy")
    assert res.returncode == 0 and "rolled back: v2 -> v1" in res.stdout
    res = run("audit", "toy", "--verify")
    assert res.returncode == 0 and "audit log intact" in res.stdout and "ops  rollback version=v1 alias=production previous=v2" in res.stdout
    log = reg/"toy"/"audit.jsonl"
    log.write_text(log.read_text().replace('"reason": "better"', '"reason": "approved by the board"'))
    res = run("audit", "toy", "--verify")
    assert res.returncode == 1 and "line 5: its content does not match its hash (edited)" in res.stderr and "FAILED verification" in res.stdout

def test_package_installs_in_a_fresh_venv_and_serves(base_registry, tmp_path_factory):
    "Copy v1 out of the repository, install its pinned requirements and wheel into a new venv, serve it, compare predictions."
    t0 = time.perf_counter()
    outside = tmp_path_factory.mktemp("outside")
    assert ROOT not in outside.parents
    pkg = outside/"toy-v1"
    shutil.copytree(base_registry/"toy"/"v1", pkg)
    venv = outside/"venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = lambda *cmd, **kw: subprocess.run([str(c) for c in cmd], cwd=outside, env=env, capture_output=True, text=True, timeout=300, **kw)
    res = run(sys.executable, "-m", "venv", venv)
    assert res.returncode == 0, res.stderr
    res = run(venv/"bin"/"pip", "install", "--no-input", "-q", "-r", pkg/"requirements.txt")
    assert res.returncode == 0, res.stdout + res.stderr
    wheel = next(pkg.glob("mlnb-*.whl"))
    res = run(venv/"bin"/"pip", "install", "--no-input", "-q", "--no-deps", wheel)
    assert res.returncode == 0, res.stderr
    res = run(venv/"bin"/"pip", "check")
    assert res.returncode == 0, res.stdout
    where = run(venv/"bin"/"python", "-c", "import mlnb, lightgbm; print(mlnb.__file__)").stdout.strip()
    assert where.startswith(str(venv)), f"mlnb must come from the new venv, not the repository: {where}"
    installed = time.perf_counter() - t0
    port = free_port()
    proc = subprocess.Popen([str(venv/"bin"/"mlnb"), "serve", str(pkg), "--port", str(port)], cwd=outside, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200: break
            except httpx.TransportError: time.sleep(0.1)
        sample = rows(20, seed=7).drop("y")
        served = httpx.post(f"{url}/predict", json=sample.to_dicts(), timeout=30)
        assert served.status_code == 200, served.text
        expected = ModelPackage(base_registry/"toy"/"v1").predict(sample)
        assert served.json()["probability"] == expected["probability"] and served.json()["prediction"] == expected["prediction"]
    finally:
        proc.terminate(); proc.wait(10)
    sample.write_csv(outside/"rows.csv")
    res = run(venv/"bin"/"mlnb", "predict", pkg, "--input", outside/"rows.csv", "--output", outside/"scored.parquet")
    assert res.returncode == 0, res.stdout + res.stderr
    assert pl.read_parquet(outside/"scored.parquet")["probability"].to_list() == expected["probability"], "batch scoring in the venv agrees too"
    print(f"fresh venv: installed in {installed:.1f}s, served and matched in {time.perf_counter() - t0 - installed:.1f}s")

def test_onnx_failure_is_recorded_or_required(tmp_path, monkeypatch):
    "A model ONNX cannot convert still packages (the reason recorded, no model.onnx) unless package.onnx is `require`."
    import onnxmltools
    from mlnb.config import PackageCfg
    train = rows(200)
    pre = Preprocessor("y", rare_min_count=1).fit(train)
    lgb.train(dict(objective="binary", verbosity=-1), lgb.Dataset(pre.transform(train).to_numpy(), train["y"].to_numpy()), 5).save_model(tmp_path/"model.txt")
    sig = signature(pre, "binary", [0, 1], "y")
    def broken(*a, **k): raise RuntimeError("unsupported objective\nmore detail")
    monkeypatch.setattr(onnxmltools, "convert_lightgbm", broken)
    files, onnx = build_package(tmp_path/"auto", tmp_path/"model.txt", pre, sig, train)
    assert onnx == {"exported": False, "reason": "conversion failed: RuntimeError: unsupported objective"} and "model.onnx" not in files
    with pytest.raises(MlnbError, match="no ONNX export: conversion failed"):
        build_package(tmp_path/"require", tmp_path/"model.txt", pre, sig, train, PackageCfg(onnx="require"))
    files, onnx = build_package(tmp_path/"off", tmp_path/"model.txt", pre, sig, train, PackageCfg(onnx="off"))
    assert onnx["reason"] == "package.onnx is off" and "model.onnx" not in files and "requirements.txt" in files

def test_binary_threshold_from_the_signature(base_registry, tmp_path):
    "A binary package predicts the second class from step 05's decision threshold (0.5 when none was recorded)."
    folder = tmp_path/"v1"
    shutil.copytree(base_registry/"toy"/"v1", folder)
    sample = rows(50, seed=3).drop("y")
    p = np.array(ModelPackage(folder).predict(sample)["probability"])
    assert ModelPackage(folder).predict(sample)["prediction"] == (p >= 0.5).astype(int).tolist()
    sig = json.loads((folder/"signature.json").read_text())
    save_json({**sig, "threshold": 0.8}, folder/"signature.json"); seal(folder)
    assert ModelPackage(folder).predict(sample)["prediction"] == (p >= 0.8).astype(int).tolist() != (p >= 0.5).astype(int).tolist()
