"""Governance on a real registered model: the audit trail of a version, reproducing it byte for byte,
role-based access to registry changes (denied attempts audited), and erasing a subject's rows."""
import json, shutil
from pathlib import Path
import polars as pl
import pytest
from mlnb.security import hash_secret

def copy_project(project: Path, dest: Path) -> Path:
    "A private copy of the session's project (config, data, runs, registry), so changes here touch no other test."
    for name in ("mlnb.yaml", "data", "runs", "registry"):
        src = project/name
        if src.is_dir(): shutil.copytree(src, dest/name, symlinks=True)
        elif src.exists(): shutil.copy2(src, dest/name)
    return dest

def test_audit_trail_of_a_version(first_run, project, cli):
    run_dir, rec, _, _ = first_run
    res = cli("models", "audit", "churn", "v1", cwd=project)
    assert res.returncode == 0, res.stderr
    t = json.loads(res.stdout)
    assert t["snapshot"]["snapshot"] == rec["steps"]["00_data"]["summary"]["snapshot"]
    assert t["snapshot"]["sha256"] and t["snapshot"]["created"], "the store's manifest adds provenance"
    assert t["run"]["id"] == "first" and t["run"]["steps"]["01_validate"]["status"] == "ok"
    assert t["validation"] == rec["steps"]["01_validate"]["summary"]
    assert t["features"] and t["gate"]["passed"] is True and t["metrics"]
    actions = [e["action"] for e in t["events"]]
    assert actions[0] == "register" and "set_alias" in actions, actions
    promoted = next(e for e in t["events"] if e["action"] == "set_alias")
    assert promoted["actor"] and promoted["alias"] == "production" and promoted["reason"]

def test_reproduce_is_byte_identical(first_run, project, cli, tmp_path):
    res = cli("reproduce", "churn", "v1", "--runs-dir", tmp_path/"runs", cwd=project, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "reproduced byte for byte" in res.stdout
    out = json.loads(res.stdout[res.stdout.index("{\n"):res.stdout.rindex("}") + 1])
    assert out["identical"] and out["registered_sha256"] == out["reproduced_sha256"]
    rec = json.loads((tmp_path/"runs"/out["run_id"]/"run.json").read_text())
    assert rec["steps"]["00_data"]["summary"]["reused"] is True, "the recorded snapshot is reused, not re-collected"
    assert rec["config"]["data"]["snapshot"] == out["snapshot"]

def test_registry_changes_need_a_role(first_run, project, cli, tmp_path):
    work = copy_project(project, tmp_path)
    (work/"registry"/"access.yaml").write_text(f"ci: {{key: '{hash_secret('tok-ci')}', roles: [register]}}\n"
                                               f"lead: {{key: '{hash_secret('tok-lead')}', roles: [admin]}}\n")
    no_key = cli("models", "promote", "churn", "v1", "--alias", "staging", cwd=work, env={"MLNB_USER": "mallory"})
    assert no_key.returncode == 2 and "no key given" in no_key.stderr and "Traceback" not in no_key.stderr
    wrong_role = cli("models", "rollback", "churn", cwd=work, env={"MLNB_TOKEN": "tok-ci"})
    assert wrong_role.returncode == 2 and "lacks the role 'rollback'" in wrong_role.stderr
    ok = cli("models", "promote", "churn", "v1", "--alias", "staging", cwd=work, env={"MLNB_TOKEN": "tok-lead", "MLNB_USER": "someone-else"})
    assert ok.returncode == 0, ok.stderr
    log = [json.loads(l) for l in (work/"registry"/"churn"/"audit.jsonl").read_text().splitlines()]
    assert [(e["action"], e.get("attempted"), e["actor"]) for e in log[-3:]] == [
        ("denied", "set_alias", "mallory"), ("denied", "rollback", log[-2]["actor"]), ("set_alias", None, "lead")]
    assert "tok-" not in (work/"registry"/"churn"/"audit.jsonl").read_text(), "keys never reach the audit log"
    verify = cli("models", "audit", "churn", "--verify", cwd=work)
    assert verify.returncode == 0, verify.stdout + verify.stderr

def test_erase_a_subject(first_run, project, cli, tmp_path):
    work = copy_project(project, tmp_path)
    before = {p: pl.read_parquet(p) for p in work.rglob("*.parquet") if "customer_id" in pl.read_parquet_schema(p)}
    victim = int(next(iter(before.values()))["customer_id"][0])
    res = cli("data", "erase", "--id", victim, "--reason", "ticket 4711", cwd=work)
    assert res.returncode == 0, res.stderr
    for p, df in before.items():
        after = pl.read_parquet(p)
        assert victim not in after["customer_id"].to_list(), p
        assert after.height == df.height - int((df["customer_id"] == victim).sum()), p
    entry = json.loads((work/"data"/"snapshots"/"erasures.jsonl").read_text().splitlines()[-1])
    assert entry["reason"] == "ticket 4711" and entry["rows"] >= 1 and entry["subjects"] == 1
    assert set(entry) == {"time", "actor", "column", "subjects", "rows", "files", "reason"}, "the record never holds the erased ids"
    assert (project/"data"/"snapshots").is_dir() and not (project/"data"/"snapshots"/"erasures.jsonl").exists(), "the original project is untouched"
