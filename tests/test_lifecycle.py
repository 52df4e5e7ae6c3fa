"""The lifecycle after deployment, end to end: a model in production serves a population that has drifted
(the synthetic generator's `drift` setting), `mlnb monitor` detects it in the prediction log, `mlnb retrain`
trains a challenger on fresh data, promotes it because it beats the champion on the labelled requests, and the
running service swaps to it. Afterwards no secret and no raw PII value is found in anything mlnb wrote."""
import json, re, shutil, time
from pathlib import Path
import httpx, polars as pl
from conftest import write_config
from mlnb.config import Synthetic, load_config
from mlnb.data import collect_sources, write_churn_sources
from mlnb.security import is_encrypted, new_data_key, scan_for_secrets
from mlnb.serve import running_service

SALT = "pii-salt-6b1f0c9e2d"
DATA_KEY = new_data_key()
KEYS = {"app": {"key": "key-app-5c7e1a9b3d", "roles": ["predict"]}, "ops": {"key": "key-ops-8f2d4b6a0c", "roles": ["predict", "admin"]}}
ENV = {"MLNB_PII_SALT": SALT, "MLNB_API_KEYS": json.dumps(KEYS), "MLNB_USER": "lifecycle-test", "MLNB_DATA_KEY": DATA_KEY}
APP, OPS = {"x-api-key": KEYS["app"]["key"]}, {"x-api-key": KEYS["ops"]["key"]}

def drifted_traffic(config: Path, folder: Path, rows: int, seed: int) -> pl.DataFrame:
    "Rows as step 00 would collect them, from a drifted population written to `folder`."
    cfg = load_config(config)
    write_churn_sources(Synthetic(rows=rows, seed=seed, drift=0.8, dir=str(folder)))
    home = Path(cfg.data.synthetic.dir)
    sources = [s.model_copy(update={"path": str(folder/Path(s.path).relative_to(home))}) for s in cfg.data.sources]
    return collect_sources(sources)[0]

def test_drift_detected_retrained_promoted_served(cli, tmp_path):
    config = write_config(tmp_path, data={"pii_mode": "pseudonymise", "encrypt": True}, validate={"contract": None},
                          serve={"log_seconds": 0.5, "encrypt_log": True, "log_retention_days": 30},
                          monitor={"labels": "labels.parquet", "min_rows": 200, "max_model_age_days": None})
    first = cli("run", "--run-id", "first", cwd=tmp_path, env=ENV)
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads((tmp_path/"registry"/"churn"/"aliases.json").read_text()) == {"production": "v1"}

    traffic = drifted_traffic(config, tmp_path/"traffic", rows=1500, seed=7)
    inputs = [c["name"] for c in json.loads((tmp_path/"registry"/"churn"/"v1"/"signature.json").read_text())["inputs"]]
    with running_service("churn@production", "-c", str(config), env=ENV) as url:
        with httpx.Client(base_url=url, headers=APP) as h:
            ids = [h.post("/predict", json=rec).raise_for_status().json()["request_id"] for rec in json.loads(traffic.select(inputs).write_json())]
        pl.DataFrame({"request_id": ids, "label": traffic["churned"]}).write_parquet(tmp_path/"labels.parquet")
        time.sleep(2)   # the prediction log is written off the request path, every 0.5 s here
        gauges = dict(re.findall(r'^mlnb_drift_psi\{column="(\w+)",version="v1"\} (\S+)$', httpx.get(f"{url}/metrics").text, re.M))
        assert float(gauges["monthly_charges"]) > 0.25 and float(gauges["tenure_days"]) < 0.1, gauges   # live drift gauges on /metrics

        mon = cli("monitor", cwd=tmp_path, env=ENV)
        assert mon.returncode == 0, mon.stdout + mon.stderr
        assert "churn@v1: retrain recommended" in mon.stdout and "drift" in mon.stdout
        path = next((tmp_path/"runs").glob("monitor-*/08_monitor/report.json"))
        report = json.loads(path.read_text())
        assert re.search(rf"^  details: \S*{re.escape(str(path.relative_to(tmp_path)))}$", mon.stdout, re.M), mon.stdout   # where the full report is
        assert report["rows"] == len(ids) and report["decision"]["retrain"] and report["performance"]["metric"]

        shutil.rmtree(tmp_path/"data"/"churn")    # the world moves on: the sources now hold the drifted population
        ret = cli("retrain", "-p", "data.synthetic.drift=0.8", "-p", "data.synthetic.seed=11", cwd=tmp_path, env=ENV, timeout=900)
        assert ret.returncode == 0, ret.stdout + ret.stderr
        out = json.loads(ret.stdout[ret.stdout.index("{\n"):])
        assert out["retrained"] and out["promoted"] and out["version"] == "v2", out
        assert "wins" in out["reason"]
        assert json.loads((tmp_path/"registry"/"churn"/"aliases.json").read_text()) == {"production": "v2"}
        moved = json.loads((tmp_path/"registry"/"churn"/"audit.jsonl").read_text().splitlines()[-1])
        assert (moved["action"], moved["version"], moved["actor"]) == ("set_alias", "v2", "lifecycle-test") and moved["reason"].startswith("retrain:")

        assert httpx.post(f"{url}/admin/reload", headers=OPS).raise_for_status().json()["version"] == "v2"
        assert httpx.get(f"{url}/model", headers=APP).json()["version"] == "v2"
        r = httpx.post(f"{url}/predict", json=json.loads(traffic.select(inputs).head(1).write_json())[0], headers=APP)
        assert r.status_code == 200 and r.json()["version"] == "v2"

    # snapshots and the prediction log are encrypted at rest
    assert all(is_encrypted(p) for p in (tmp_path/"data"/"snapshots").glob("*/snapshot.parquet")) and len(list((tmp_path/"data"/"snapshots").glob("*/"))) >= 2
    logged = list((tmp_path/"predictions").rglob("*.parquet*"))
    assert logged and all(p.name.endswith(".parquet.enc") and is_encrypted(p) for p in logged)
    # nothing mlnb wrote holds a secret or a raw PII value (the raw sources themselves are the user's data)
    raw = traffic.select("email", "phone").head(200)     # the same id-based values as the training sources
    secrets = [SALT, DATA_KEY, *(k["key"] for k in KEYS.values())]
    pii = raw["email"].to_list() + raw["phone"].to_list()
    for folder in ("runs", "registry", "predictions", "data/snapshots"):
        assert (tmp_path/folder).is_dir(), folder
        assert scan_for_secrets(tmp_path/folder, secrets + pii) == [], f"secret or PII found under {folder}"
