"The served model: `mlnb serve` over real HTTP agrees with `mlnb predict`; bad input and tampered models are refused."
import json, os, shutil, subprocess, sys, time
from pathlib import Path
import httpx, polars as pl
import pytest
from conftest import MLNB
from mlnb.serve import free_port

@pytest.fixture(scope="module")
def service(first_run, project, home):
    port = free_port()
    env = {**os.environ, "HOME": str(home)}
    proc = subprocess.Popen([str(MLNB), "serve", "churn@production", "--port", str(port)], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/health").status_code == 200: break
        except httpx.TransportError: time.sleep(0.1)
        assert proc.poll() is None, proc.stdout.read()
    yield url
    proc.terminate(); proc.wait(10)

def test_health(service):
    assert httpx.get(f"{service}/health").json() == {"status": "ok", "model": "churn", "version": "v1"}

def test_served_equals_batch_scoring(service, first_run, project, cli, tmp_path):
    run_dir = first_run[0]
    test = pl.read_parquet(run_dir/"02_features"/"test.parquet")
    inputs = [c["name"] for c in json.loads((project/"registry"/"churn"/"v1"/"signature.json").read_text())["inputs"]]
    served = httpx.post(f"{service}/predict", json={"records": json.loads(test.select(inputs).write_json())}, timeout=60).json()
    assert served["version"] == "v1" and len(served["prediction"]) == test.height
    src = tmp_path/"test.csv"
    test.write_csv(src)
    res = cli("predict", "churn@production", "--input", src, "--output", tmp_path/"scored.parquet", cwd=project)
    assert res.returncode == 0, res.stderr
    batch = pl.read_parquet(tmp_path/"scored.parquet")
    assert batch["customer_id"].to_list() == test["customer_id"].to_list()
    assert batch["probability"].to_list() == served["probability"], "service and batch scoring must agree exactly"
    assert batch["prediction"].to_list() == served["prediction"]

@pytest.mark.parametrize("body, field", [
    ({"records": [{"plan": "basic"}]}, "age"),                      # missing fields
    ({"records": [{"nonsense": 1}]}, "nonsense"),                    # unknown field
    ({"records": []}, "records"),                                    # empty batch
])
def test_bad_requests_get_422(service, body, field):
    r = httpx.post(f"{service}/predict", json=body)
    assert r.status_code == 422 and field in r.text

def test_wrong_type_gets_422(service, first_run, project):
    test = pl.read_parquet(first_run[0]/"02_features"/"test.parquet")
    inputs = [c["name"] for c in json.loads((project/"registry"/"churn"/"v1"/"signature.json").read_text())["inputs"]]
    record = json.loads(test.select(inputs).head(1).write_json())[0] | {"age": "old"}
    r = httpx.post(f"{service}/predict", json={"records": [record]})
    assert r.status_code == 422 and "age" in r.text

def test_tampered_model_is_refused(first_run, project, cli, tmp_path):
    copy = tmp_path/"v1"
    shutil.copytree(project/"registry"/"churn"/"v1", copy)
    with open(copy/"model.txt", "a") as f: f.write("\n")
    res = cli("serve", copy, "--port", str(free_port()), cwd=project, timeout=60)
    assert res.returncode == 2
    assert "integrity check" in res.stderr and "model.txt: sha256 differs" in res.stderr
