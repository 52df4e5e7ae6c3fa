"The model service over real HTTP: golden parity with batch scoring, auth, strict requests, limits, metrics, the prediction log, hot reload and its faults."
import collections, concurrent.futures as cf, contextlib, datetime as dt, json, os, shutil, signal, socket, subprocess, sys, tempfile, threading, time
from pathlib import Path
import httpx, numpy as np, polars as pl
import pytest, yaml
import lightgbm as lgb
from mlnb.core import save_json
from mlnb.features import Preprocessor
from mlnb.registry import ModelPackage, register, set_alias
from mlnb.serve import free_port, running_service, score_file
from conftest import MLNB

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"app": {"key": "k-app-0123456789", "roles": ["predict"]}, "ops": {"key": "k-ops-0123456789", "roles": ["predict", "admin"]}}
APP, OPS = {"x-api-key": "k-app-0123456789"}, {"x-api-key": "k-ops-0123456789"}

def churn_rows(n: int, seed: int) -> pl.DataFrame:
    "Churn-like raw rows with every input type, nulls and a PII column."
    r = np.random.default_rng(seed)
    pick = lambda vals, p=None: [vals[i] for i in r.choice(len(vals), n, p=p)]
    df = pl.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)], "email": [f"u{i}@example.com" for i in range(n)],
        "plan": pick(["basic", "standard", "premium", "legacy"], [0.5, 0.3, 0.195, 0.005]), "region": pick(["west", "east", None]),
        "age": pl.Series([None if m else a for m, a in zip(r.random(n) < 0.05, r.normal(45, 15, n).round(1).tolist())], dtype=pl.Float64),
        "tenure_days": r.integers(0, 3000, n), "n_events": pl.Series(r.integers(0, 60, n), dtype=pl.UInt32),
        "monthly_charges": r.gamma(3, 20, n), "signup_date": [dt.date(2018, 1, 1) + dt.timedelta(days=int(d)) for d in r.integers(0, 2500, n)]})
    logit = -1 + 0.8 * (df["plan"] == "basic").cast(pl.Int64).to_numpy() - df["tenure_days"].to_numpy() / 1500 + r.normal(0, 1, n)
    return df.with_columns(churned=pl.Series((logit > 0).astype(int)))

def build(registry: Path, rows: pl.DataFrame, rounds: int) -> str:
    "Fit preprocessing (the default config's derived features) and a booster; register; return the version."
    derived = yaml.safe_load((ROOT/"mlnb.yaml").read_text())["features"]["derived"]
    pre = Preprocessor("churned", derived, exclude=["customer_id", "email"], rare_min_count=10).fit(rows)
    X = pre.transform(rows).to_numpy()
    d = registry.parent/f"build{rounds}"; d.mkdir()
    lgb.train(dict(objective="binary", verbosity=-1, num_threads=1, seed=0), lgb.Dataset(X, rows["churned"].to_numpy()), rounds).save_model(d/"model.txt")
    save_json(pre.to_dict(), d/"preprocessing.json")
    save_json(dict(task="binary", classes=[0, 1], target="churned", pii=["email"],
                   inputs=[dict(name=c, dtype=t, categories=pre.categories_.get(c)) for c, t in pre.inputs_.items()]), d/"signature.json")
    version, _ = register(registry, "churn", {n: d/n for n in ("model.txt", "preprocessing.json", "signature.json")}, dict(run_id="test", metrics={"auc": 0.8}, gate={"passed": True, "reason": "test"}))
    return version

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("serve")
    registry = base/"registry"
    rows = churn_rows(3000, 0)
    v1, v2 = build(registry, rows, 20), build(registry, rows, 40)
    set_alias(registry, "churn", "production", v1, reason="test")
    return dict(base=base, registry=registry, rows=churn_rows(400, 1), v1=v1, v2=v2)

@pytest.fixture(scope="module")
def served(models):
    "The service on churn@production with keys and the prediction log; `stop()` ends it (SIGTERM)."
    stack = contextlib.ExitStack()
    url = stack.enter_context(running_service("churn@production", "--registry", str(models["registry"]), "--log-dir", str(models["base"]/"predlog"),
                                              env={"MLNB_API_KEYS": json.dumps(KEYS)}))
    yield dict(url=url, stop=stack.close)
    stack.close()

@pytest.fixture
def service(served): return served["url"]

def records(rows: pl.DataFrame) -> list[dict]:
    inputs = [c for c in rows.columns if c not in ("customer_id", "email", "churned")]
    return json.loads(rows.select(inputs).write_json())

def test_live_ready_and_model(service, models):
    assert httpx.get(f"{service}/health").json()["status"] == "ok"
    assert httpx.get(f"{service}/ready").json() == {"status": "ready", "model": "churn", "version": models["v1"]}
    m = httpx.get(f"{service}/model", headers=APP).json()
    assert m["version"] == models["v1"] and m["fast_encoder"] is True and m["metrics"] == {"auc": 0.8}
    assert [c["name"] for c in m["signature"]["inputs"]][:2] == ["plan", "region"]

def test_auth(service, models):
    rec = records(models["rows"].head(1))[0]
    assert httpx.post(f"{service}/predict", json=rec).status_code == 401
    assert httpx.post(f"{service}/predict", json=rec, headers={"x-api-key": "wrong"}).status_code == 401
    r = httpx.post(f"{service}/admin/reload", headers=APP)
    assert r.status_code == 403 and "k-app" not in r.text
    assert httpx.get(f"{service}/health").status_code == httpx.get(f"{service}/ready").status_code == 200   # open

def test_golden_service_equals_batch_scoring(service, models, tmp_path):
    "The same rows scored one by one (record encoder), in a large list (polars) and by `mlnb predict` agree bit for bit."
    rows = models["rows"]
    recs = records(rows)
    recs[0]["plan"], recs[1]["region"] = "never-seen", None                    # an unseen category and a null
    rows = rows.with_columns(pl.Series("plan", [r["plan"] for r in recs]), pl.Series("region", [r["region"] for r in recs]))
    with httpx.Client(headers=APP) as c:
        single = [c.post(f"{service}/predict", json=r).json() for r in recs[:150]]
        small = c.post(f"{service}/predict", json=recs[:50]).json()
        big = c.post(f"{service}/predict", json=recs).json()
    rows.write_csv(tmp_path/"rows.csv")
    package = ModelPackage(models["registry"]/"churn"/models["v1"])
    n = score_file(package, tmp_path/"rows.csv", tmp_path/"scored.parquet", chunk=128)
    batch = pl.read_parquet(tmp_path/"scored.parquet")
    assert n == rows.height and batch["customer_id"].to_list() == rows["customer_id"].to_list()
    expected = batch["probability"].to_list()
    assert [s["probability"][0] for s in single] == expected[:150]
    assert small["probability"] == expected[:50] and big["probability"] == expected
    assert big["prediction"] == batch["prediction"].to_list()
    assert package.predict(rows)["probability"] == expected
    assert len({s["request_id"] for s in single}) == 150

@pytest.mark.parametrize("change, field", [
    (lambda r: r.pop("age") and r, "age"),                         # missing
    (lambda r: {**r, "nonsense": 1}, "nonsense"),                  # unknown
    (lambda r: {**r, "tenure_days": 3.5}, "tenure_days"),          # float for an integer column
    (lambda r: {**r, "age": "old"}, "age"),                        # string for a number
    (lambda r: {**r, "signup_date": "yesterday"}, "signup_date"),  # not a date
    (lambda r: {**r, "n_events": -1}, "n_events"),                 # out of UInt32's range
])
def test_bad_records_get_422_naming_the_field(service, models, change, field):
    rec = change(records(models["rows"].head(1))[0])
    for body in (rec, [rec]):
        r = httpx.post(f"{service}/predict", json=body, headers=APP)
        assert r.status_code == 422 and field in r.text, r.text

def test_limits_get_413(service, models):
    rec = records(models["rows"].head(1))[0]
    assert httpx.post(f"{service}/predict", json=[rec] * 1001, headers=APP).status_code == 413          # serve.max_batch
    assert httpx.post(f"{service}/predict", content=b"[" + b" " * 1_100_000 + b"]", headers={**APP, "content-type": "application/json"}).status_code == 413
    assert httpx.post(f"{service}/predict", json=[], headers=APP).status_code == 422

def test_explain(service, models):
    recs = records(models["rows"].head(3))
    r = httpx.post(f"{service}/explain", json=recs, headers=APP).json()
    package = ModelPackage(models["registry"]/"churn"/models["v1"])
    raw = package.booster.predict(package.preprocessor.transform(models["rows"].head(3)).to_numpy(), raw_score=True)
    assert np.allclose(np.sum(r["contributions"], axis=1) + r["base_value"], raw) and len(r["features"]) == len(r["contributions"][0])

def test_metrics(service):
    text = httpx.get(f"{service}/metrics").text
    assert 'mlnb_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'mlnb_request_seconds_bucket{le="0.001",route="/predict",status="200"}' in text
    assert 'mlnb_model_info{model="churn",version="v1"} 1.0' in text and "mlnb_prediction_score_bucket" in text
    assert 'mlnb_predictions_total{prediction="0",version="v1"}' in text

def test_reload_refuses_corrupt_version_then_swaps_under_load(service, models):
    "A tampered version is refused (409) and v1 keeps serving; the intact version swaps in while requests run, none failing."
    reg, v2 = models["registry"], models["v2"]
    model_txt = reg/"churn"/v2/"model.txt"
    good = model_txt.read_bytes()
    set_alias(reg, "churn", "production", v2, reason="test reload")
    model_txt.write_bytes(good.replace(b"Tree=0", b"Tree=0\n", 1))
    r = httpx.post(f"{service}/admin/reload", headers=OPS)
    assert r.status_code == 409 and "sha256 differs" in r.text and "still serving v1" in r.text
    assert httpx.get(f"{service}/ready").json()["version"] == "v1"
    model_txt.write_bytes(good)
    rec, stop, seen, failures = records(models["rows"].head(1))[0], threading.Event(), set(), []
    def hammer():
        with httpx.Client(headers=APP) as c:
            while not stop.is_set():
                r = c.post(f"{service}/predict", json=rec)
                (seen.add(r.json()["version"]) if r.status_code == 200 else failures.append(r.status_code))
    with cf.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(hammer) for _ in range(4)]
        time.sleep(0.3)
        r = httpx.post(f"{service}/admin/reload", headers=OPS, timeout=60)
        time.sleep(0.3); stop.set()
        for f in futures: f.result()
    assert r.json() == {"status": "swapped", "version": "v2", "previous": "v1"}
    assert not failures and seen == {"v1", "v2"}
    assert httpx.get(f"{service}/ready").json()["version"] == "v2"

def test_prediction_log_flushed_on_shutdown(served, models):
    "Runs after the other service tests: stops the service, whose last rows are flushed at shutdown."
    served["stop"]()
    logged = pl.read_parquet(models["base"]/"predlog"/"churn"/"**"/"*.parquet")
    assert logged.height > 150 and "email" not in logged.columns and "customer_id" not in logged.columns
    assert {"time", "version", "request_id", "plan", "signup_date", "prediction", "probability"} <= set(logged.columns)
    assert set(logged["version"]) == {"v1", "v2"}

def test_the_log_holds_exactly_what_was_sent_and_answered(models, tmp_path):
    "Single and batch requests: every record is logged with the signature's types, beside its own outputs, version and request id."
    sent = models["rows"].head(4).with_columns(plan=pl.Series(["basic", None, "never_seen", "premium"]))   # a missing and an unseen value
    recs = records(sent)
    with running_service("churn@v1", "--registry", str(models["registry"]), "--log-dir", str(tmp_path/"log"), env={"MLNB_API_KEYS": json.dumps(KEYS)}) as url:
        one = httpx.post(f"{url}/predict", json=recs[0], headers={**APP, "x-request-id": "req-one"}).json()
        many = httpx.post(f"{url}/predict", content=json.dumps(recs[1:], indent=2), headers={**APP, "content-type": "application/json"}).json()
    logged = pl.read_parquet(tmp_path/"log"/"churn"/"**"/"*.parquet").sort("time", maintain_order=True)
    inputs = [c for c in sent.columns if c not in ("customer_id", "email", "churned")]
    assert logged.select(inputs).equals(sent.select(inputs))                       # values and types, row by row
    assert logged["request_id"].to_list() == ["req-one"] + [many["request_id"]] * 3
    assert logged["probability"].to_list() == one["probability"] + many["probability"]
    assert logged["prediction"].to_list() == one["prediction"] + many["prediction"] and set(logged["version"]) == {"v1"}
    assert logged.schema["time"] == pl.Datetime("us", "UTC") and "email" not in logged.columns

def test_a_request_the_log_cannot_read_costs_only_itself(tmp_path, caplog):
    from mlnb.serve import PredictionLog
    log = PredictionLog(tmp_path, {"plan": pl.String, "email": pl.String}, pii=["email"], batch_rows=10**6, seconds=60)
    log.add_json(b'[{"plan": "b"', b'{"model": "toy"}', 1)                         # cut short, and first: the others are still read
    log.add("toy", "v1", "r1", [{"plan": "a", "email": "x@y.z"}], {"prediction": [1], "probability": [0.7]})
    log.add("toy", "v1", "r3", [{"plan": "c", "email": "u@v.w"}, {"plan": None, "email": None}], {"prediction": [0, 1], "probability": [0.2, 0.9]})
    log.close()
    logged = pl.read_parquet(next(tmp_path.rglob("*.parquet")))
    assert logged.columns == ["time", "model", "version", "request_id", "plan", "prediction", "probability", "record"]
    assert logged.select("request_id", "record", "plan", "prediction").rows() == [("r1", 0, "a", 1), ("r3", 0, "c", 0), ("r3", 1, None, 1)]   # labels join on (request_id, record)
    assert "1 of 3 requests could not be read" in caplog.text
    nothing = PredictionLog(tmp_path/"none", {"plan": pl.String}, batch_rows=10**6, seconds=60)
    nothing.add_json(b'[{"plan"', b'{', 1)
    nothing.close()                                                                  # nothing readable: no file, a clear log line
    assert not list((tmp_path/"none").rglob("*.parquet")) and "1 of 1 requests could not be read" in caplog.text

def test_tampered_model_is_refused_at_start(models, tmp_path):
    copy = tmp_path/"v1"
    shutil.copytree(models["registry"]/"churn"/"v1", copy)
    with open(copy/"model.txt", "a") as f: f.write("\n")
    res = subprocess.run([str(MLNB), "serve", str(copy), "--port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "model.txt: sha256 differs" in res.stderr

def test_public_address_without_keys_is_refused(models):
    env = {k: v for k, v in os.environ.items() if k != "MLNB_API_KEYS"}
    res = subprocess.run([str(MLNB), "serve", "churn@v1", "--registry", str(models["registry"]), "--host", "0.0.0.0",
                          "--port", str(free_port())], capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 2 and "without API keys" in res.stderr

@pytest.mark.parametrize("workers", [1, 2])
def test_graceful_shutdown_drains_in_flight_requests(models, workers):
    "SIGTERM while slow requests are in flight: each still gets its answer (with 2 workers the parent passes the signal on)."
    recs = records(models["rows"]) * 2
    port = free_port()
    env = {**os.environ, "MLNB_API_KEYS": json.dumps(KEYS)}
    proc = subprocess.Popen([str(MLNB), "serve", "churn@v1", "--registry", str(models["registry"]), "--port", str(port), "--no-log", "--workers", str(workers)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/ready").status_code == 200: break
            except httpx.TransportError: time.sleep(0.1)
        body = json.dumps(recs[:200]).encode()
        def slow_body():                                  # the request is in flight for ~1 s
            for i in range(0, len(body), len(body) // 10 + 1): yield body[i:i + len(body) // 10 + 1]; time.sleep(0.1)
        with cf.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(httpx.post, f"{url}/predict", content=slow_body(), headers={**APP, "content-type": "application/json"}, timeout=60) for _ in range(4)]
            time.sleep(0.4)
            proc.send_signal(signal.SIGTERM)
            codes = [f.result().status_code for f in futures]
        assert codes == [200] * 4
        out = proc.communicate(timeout=30)[0]
        assert proc.returncode in (0, -signal.SIGTERM)   # uvicorn re-raises the signal after draining
        assert out.count("stopped serving churn@v1") == workers, out   # each worker says it has stopped
        assert out.index(f"starting churn@v1 on {url} with {workers} worker(s)") < out.index(f"serving churn@v1 on {url}: ready (docs at {url}/docs)"), out
    finally:
        if proc.poll() is None: proc.kill()

def test_two_workers_follow_the_alias(models, tmp_path):
    "`--workers 2` with `serve.watch_s`: both workers answer, metrics add up across them, and both follow an alias move."
    from conftest import write_config
    registry = tmp_path/"registry"
    shutil.copytree(models["registry"], registry)
    set_alias(registry, "churn", "staging", "v1", reason="test")
    cfg = write_config(tmp_path, serve={"watch_s": 0.3, "log_dir": None}, package={"registry": str(registry)})
    rec = records(models["rows"].head(1))[0]
    with running_service("churn@staging", "-c", str(cfg), "--workers", "2", env={"MLNB_API_KEYS": json.dumps(KEYS)}) as url:
        sent = []
        def versions():                                   # a new connection each: both workers answer
            sent.append(40)
            return {httpx.post(f"{url}/predict", json=rec, headers=APP).json()["version"] for _ in range(40)}
        assert versions() == {"v1"}
        set_alias(registry, "churn", "staging", "v2", reason="test follow")
        wait_for(lambda: versions() == {"v2"}, 30)                    # each checks every 0.3 s; the margin is for a slow, busy machine
        total = f'mlnb_requests_total{{method="POST",route="/predict",status="200"}} {float(sum(sent))}'
        for _ in range(30):                               # each worker publishes its tallies every second
            if total in (text := httpx.get(f"{url}/metrics").text): break
            time.sleep(0.2)
        assert total in text, text

def test_a_reload_reaches_every_worker(models, tmp_path):
    "`--workers 2` without `serve.watch_s`: a reload swaps the worker that gets it, says so, and the other follows (it checks every FOLLOW_S)."
    from conftest import write_config
    from mlnb.serve import FOLLOW_S
    registry = tmp_path/"registry"
    shutil.copytree(models["registry"], registry)
    set_alias(registry, "churn", "staging", "v1", reason="test")
    cfg = write_config(tmp_path, serve={"log_dir": None}, package={"registry": str(registry)})
    rec = records(models["rows"].head(1))[0]
    with running_service("churn@staging", "-c", str(cfg), "--workers", "2", env={"MLNB_API_KEYS": json.dumps(KEYS)}) as url:
        versions = lambda: {httpx.post(f"{url}/predict", json=rec, headers=APP).json()["version"] for _ in range(40)}   # a new connection each: both workers answer
        assert versions() == {"v1"}
        set_alias(registry, "churn", "staging", "v2", reason="test reload")
        r = httpx.post(f"{url}/admin/reload", headers=OPS)
        assert r.status_code == 200 and r.json()["version"] == "v2", r.text
        assert r.json()["note"] == f"this worker only; the other 1 follow churn@staging within {FOLLOW_S:g} s"
        wait_for(lambda: versions() == {"v2"}, FOLLOW_S + 30)     # it checks every FOLLOW_S; the margin is for a slow, busy machine

def workers_of(port: int) -> tuple[int, list[int]]:
    "The `mlnb serve` parent listening on `port` and its worker processes (Linux /proc)."
    procs = {}
    for p in Path("/proc").iterdir():
        try: procs[int(p.name)] = (int((p/"stat").read_text().rsplit(")", 1)[1].split()[1]), (p/"cmdline").read_bytes().split(b"\0"))
        except (ValueError, OSError): pass
    parent = next(pid for pid, (_, cmd) in procs.items() if b"serve" in cmd and str(port).encode() in cmd)
    return parent, sorted(pid for pid, (ppid, cmd) in procs.items() if ppid == parent and any(b"spawn_main" in c for c in cmd))

def listening(port: int) -> int:
    "How many sockets listen on 127.0.0.1:`port` (one per warm worker)."
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(r[1] == f"0100007F:{port:04X}" and r[3] == "0A" for r in rows)

def wait_for(check, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)

def test_each_worker_has_its_own_socket_and_takes_a_share(models, tmp_path):
    "With --workers 2 each worker listens on the port itself (SO_REUSEPORT), so new connections reach both, not whichever woke first; each sizes polars' pool to its share of the cores."
    rec = records(models["rows"].head(1))[0]
    with running_service("churn@v1", "--registry", str(models["registry"]), "--workers", "2", "--log-dir", str(tmp_path/"log"),
                         env={"MLNB_API_KEYS": json.dumps(KEYS)}) as url:
        port = int(url.rsplit(":", 1)[1])
        wait_for(lambda: listening(port) == 2)
        kids = workers_of(port)[1]
        assert len(kids) == 2
        share = f"POLARS_MAX_THREADS={max(1, os.cpu_count() // 2)}".encode()     # each worker's polars pool gets its share of the cores
        assert "POLARS_MAX_THREADS" not in os.environ, "the test checks the default: unset POLARS_MAX_THREADS"
        assert all(share in Path(f"/proc/{k}/environ").read_bytes().split(b"\0") for k in kids)
        for _ in range(200): assert httpx.post(f"{url}/predict", json=rec, headers=APP).status_code == 200   # a new connection each
    per_worker = collections.Counter(f.name.split("-")[1] for f in (tmp_path/"log").rglob("*.parquet") for _ in range(pl.read_parquet(f).height))
    assert len(per_worker) == 2 and sum(per_worker.values()) == 200 and min(per_worker.values()) >= 40, per_worker

def test_a_worker_that_dies_is_replaced(models):
    "kill -9 one worker: the other keeps answering, and the parent starts a new one that listens again."
    rec = records(models["rows"].head(1))[0]
    with running_service("churn@v1", "--registry", str(models["registry"]), "--workers", "2", "--no-log", env={"MLNB_API_KEYS": json.dumps(KEYS)}) as url:
        port = int(url.rsplit(":", 1)[1])
        wait_for(lambda: listening(port) == 2)
        _, before = workers_of(port)
        os.kill(before[0], signal.SIGKILL)
        wait_for(lambda: before[0] not in workers_of(port)[1], 10)
        assert all(httpx.post(f"{url}/predict", json=rec, headers=APP).status_code == 200 for _ in range(20))
        wait_for(lambda: len(workers_of(port)[1]) == 2 and listening(port) == 2)
        assert before[1] in workers_of(port)[1]

def test_workers_that_cannot_start_stop_the_service():
    "A worker whose app cannot start is not restarted forever: the parent stops the others and fails, naming the cause."
    code = f"from mlnb.serve import run_workers; run_workers('mlnb_no_such_module:app', 2, host='127.0.0.1', port={free_port()})"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "could not start the app" in res.stderr and "mlnb_no_such_module" in res.stderr

def test_a_taken_port_is_a_clear_error(models):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0)); taken.listen()
        port = taken.getsockname()[1]
        for workers in ("1", "2"):
            res = subprocess.run([str(MLNB), "serve", "churn@v1", "--registry", str(models["registry"]), "--port", str(port), "--workers", workers],
                                 capture_output=True, text=True, timeout=60, env={**os.environ, "MLNB_API_KEYS": json.dumps(KEYS)})
            assert res.returncode == 2 and f"cannot listen on 127.0.0.1:{port}: Address already in use" in res.stderr, res.stderr

def test_tls(models, tmp_path):
    "--ssl-certfile/--ssl-keyfile reach uvicorn: the service answers over HTTPS with that certificate."
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False).sign(key, hashes.SHA256()))
    (tmp_path/"cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path/"key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with running_service("churn@v1", "--registry", str(models["registry"]), "--no-log", "--ssl-certfile", str(tmp_path/"cert.pem"),
                         "--ssl-keyfile", str(tmp_path/"key.pem"), env={"MLNB_API_KEYS": json.dumps(KEYS)}) as url:
        assert url.startswith("https://")
        r = httpx.post(f"{url}/predict", json=records(models["rows"].head(1))[0], headers=APP, verify=str(tmp_path/"cert.pem"))
        assert r.status_code == 200 and r.json()["version"] == "v1"

def test_unseen_category_policy_reject(models):
    "With unseen_categories=reject the schema lists each column's categories: an unseen one is a 422 naming the column."
    from starlette.testclient import TestClient
    from mlnb.serve import ServeSettings, create_app
    os.environ["MLNB_TEST_SERVE_KEYS"] = json.dumps(KEYS)
    app = create_app(ServeSettings("churn@v1", str(models["registry"]), keys_env="MLNB_TEST_SERVE_KEYS", unseen_categories="reject"))
    rec = records(models["rows"].head(1))[0]
    with TestClient(app) as c:
        assert c.post("/predict", json={**rec, "plan": "basic"}, headers=APP).status_code == 200
        r = c.post("/predict", json={**rec, "plan": "platinum"}, headers=APP)
        assert r.status_code == 422 and "plan" in r.text
        assert c.post("/predict", json={**rec, "plan": None}, headers=APP).status_code == 200        # missing stays allowed

def app_on(registry, model="churn@production", **kw):
    "The app itself (no server), with the test key ring."
    from mlnb.serve import ServeSettings, create_app
    os.environ["MLNB_TEST_SERVE_KEYS"] = json.dumps(KEYS)
    return create_app(ServeSettings(model, str(registry), keys_env="MLNB_TEST_SERVE_KEYS", drift_window=0, **kw))

def test_requests_must_be_unambiguous_json_within_the_limits(models):
    "Not JSON -> 415; a key given twice -> 422 naming it (the log must hold what was scored); too many records -> 413 before any is checked; a 422 lists at most 50 errors."
    from starlette.testclient import TestClient
    rec = records(models["rows"].head(1))[0]
    body = json.dumps(rec)
    twice = body[:-1] + ', "plan": "' + ("basic" if rec["plan"] != "basic" else "premium") + '"}'
    with TestClient(app_on(models["registry"], "churn@v1")) as c:
        assert c.post("/predict", content=body, headers=APP).status_code == 415                                        # no content type
        r = c.post("/predict", content=body, headers={**APP, "content-type": "text/plain"})                             # a web form's kind
        assert r.status_code == 415 and "application/json" in r.json()["detail"]
        assert c.post("/predict", content=body, headers={**APP, "content-type": "application/json; charset=utf-8"}).status_code == 200
        r = c.post("/predict", content=twice, headers={**APP, "content-type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"] == [dict(loc=["body", "plan"], msg="field given more than once", type="duplicate_key")]
        r = c.post("/predict", content=f"[{body}, {twice}]", headers={**APP, "content-type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", 1, "plan"]
        spaced = body[:-1] + ', "plan"  :  "basic"}'                                                                   # whitespace before the colon
        assert c.post("/predict", content=spaced, headers={**APP, "content-type": "application/json"}).status_code == 422
        quoted = {**rec, "plan": 'a"b:c'}                                                                              # a quote and colon inside a value
        assert c.post("/predict", json=quoted, headers=APP).status_code == 200
        r = c.post("/predict", content=b"[" + b"{}," * 200_000 + b"{}]", headers={**APP, "content-type": "application/json"})
        assert r.status_code == 413 and "at most 1000" in r.json()["detail"] and len(r.content) < 200
        r = c.post("/predict", json=[{}] * 1000, headers=APP)                                                          # 1000 records, each missing every field
        detail = r.json()["detail"]
        assert r.status_code == 422 and len(detail) == 51 and detail[-1]["type"] == "too_many_errors" and "more errors" in detail[-1]["msg"]
        r = c.post("/predict", json=rec)
        assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]

def test_reload_refuses_a_version_with_other_inputs_and_checks_the_served_files(models, tmp_path):
    "The request checks follow the served version's inputs, so a version with other columns needs a restart (409); reloading the same version re-verifies its files."
    from starlette.testclient import TestClient
    registry = tmp_path/"registry"
    shutil.copytree(models["registry"], registry)
    set_alias(registry, "churn", "production", models["v1"], reason="test")
    rows = churn_rows(3000, 0).drop("age").rename({"region": "area"})
    other = build(registry, rows, 10)
    with TestClient(app_on(registry)) as c:
        set_alias(registry, "churn", "production", other, reason="test")
        r = c.post("/admin/reload", headers=OPS)
        assert r.status_code == 409 and "other input columns" in r.text and "added area" in r.text and "removed region, age" in r.text and "still serving v1" in r.text
        assert c.post("/predict", json=records(models["rows"].head(1))[0], headers=APP).json()["version"] == "v1"
        set_alias(registry, "churn", "production", models["v1"], reason="test")
        assert c.post("/admin/reload", headers=OPS).json() == {"status": "unchanged", "version": "v1"}
        model_txt = registry/"churn"/models["v1"]/"model.txt"
        model_txt.write_bytes(model_txt.read_bytes() + b"\n")
        r = c.post("/admin/reload", headers=OPS)
        assert r.status_code == 409 and "sha256 differs" in r.text and "still serving v1" in r.text
        assert c.post("/predict", json=records(models["rows"].head(1))[0], headers=APP).status_code == 200          # from memory

def test_without_keys_a_web_page_cannot_call_the_service(models):
    "No key ring (loopback only): a browser's cross-site request, which carries its page's Origin, is a 403; local programs go on."
    from starlette.testclient import TestClient
    from mlnb.serve import ServeSettings, create_app
    with TestClient(create_app(ServeSettings("churn@v1", str(models["registry"]), keys_env="MLNB_TEST_NO_SUCH_KEYS", drift_window=0))) as c:
        for path in ("/admin/reload", "/predict"):
            r = c.post(path, headers={"origin": "https://pages.example"})
            assert r.status_code == 403 and "web page https://pages.example is refused" in r.json()["detail"], r.text
        assert c.post("/admin/reload").json() == {"status": "unchanged", "version": "v1"}
        assert c.post("/admin/reload", headers={"origin": "http://testserver"}).status_code == 200      # the service's own page
        assert c.post("/predict", json=records(models["rows"].head(1))[0]).status_code == 200

def test_a_replacement_that_cannot_start_leaves_the_other_workers_serving(models, tmp_path):
    "Files of the served version damaged, then a worker killed: its replacement cannot start, the other worker keeps serving and the slot is retried."
    registry = tmp_path/"registry"
    shutil.copytree(models["registry"], registry)
    model_txt = registry/"churn"/models["v1"]/"model.txt"
    good, rec = model_txt.read_bytes(), records(models["rows"].head(1))[0]
    with running_service("churn@v1", "--registry", str(registry), "--workers", "2", "--no-log", env={"MLNB_API_KEYS": json.dumps(KEYS)}) as url:
        port = int(url.rsplit(":", 1)[1])
        wait_for(lambda: listening(port) == 2)
        parent, before = workers_of(port)
        model_txt.write_bytes(good + b"\n")
        os.kill(before[0], signal.SIGKILL)
        wait_for(lambda: before[0] not in workers_of(port)[1], 10)
        time.sleep(4)                                                      # the replacement has tried and failed by now
        assert Path(f"/proc/{parent}").exists() and listening(port) == 1
        assert all(httpx.post(f"{url}/predict", json=rec, headers=APP).status_code == 200 for _ in range(20))
        model_txt.write_bytes(good)
        wait_for(lambda: listening(port) == 2, 30)                         # retried after RETRY_S: back to two workers

@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "port 70000 is not a TCP port"),
    (["--workers", "0"], "0 workers cannot serve"),
    (["--host", "999.1.1.1"], "use an address of this machine for --host"),
    (["--keys-file", "/nonexistent/keys.yaml"], "the key ring file /nonexistent/keys.yaml does not exist"),
    (["--ssl-certfile", "/nonexistent/cert.pem"], "--ssl-certfile: /nonexistent/cert.pem does not exist"),
])
def test_bad_serve_arguments_are_clear_errors(models, tmp_path, args, message):
    env = {**{k: v for k, v in os.environ.items() if k != "MLNB_API_KEYS"}, **({"MLNB_API_KEYS": json.dumps(KEYS)} if "--host" in args else {})}
    res = subprocess.run([str(MLNB), "serve", "churn@v1", "--registry", str(models["registry"]), *args], capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr and "serving" not in res.stdout, res.stderr

def test_drift_gauges_do_not_keep_a_stale_value(models):
    "A column the latest window cannot measure (here: all missing) shows NaN on /metrics, not the PSI of an older window."
    import math, itertools
    from prometheus_client import CollectorRegistry
    from mlnb.monitor import reference_stats
    from mlnb.serve import DriftWatch
    rows = churn_rows(2000, 3)
    registry = CollectorRegistry()
    watch = DriftWatch(registry, window=500, every_s=0, min_rows=100)
    watch.version, watch.reference = "v1", reference_stats(rows, ["age", "plan"], ["plan"])
    watch.recent.extend(zip(rows.select("age", "plan").head(500).to_dicts(), itertools.repeat(None)))
    first = watch.update()
    value = lambda c: registry.get_sample_value("mlnb_drift_psi", {"version": "v1", "column": c})
    assert set(first) == {"age", "plan"} and value("age") == first["age"] and not math.isnan(value("age"))
    watch.recent.extend(zip([{"age": None, "plan": "basic"}] * 500, itertools.repeat(None)))
    second = watch.update()
    assert "age" not in second and math.isnan(value("age")) and value("plan") == second["plan"]

def test_unknown_roles_in_the_key_ring_are_an_error(monkeypatch):
    from mlnb.core import MlnbError
    from mlnb.serve import ServeSettings, load_keys
    monkeypatch.setenv("MLNB_TEST_ROLES", json.dumps({"ops": {"key": "k-0123456789", "roles": ["predict", "god"]}}))
    with pytest.raises(MlnbError, match="unknown role.s. god"): load_keys(ServeSettings("churn@v1", keys_env="MLNB_TEST_ROLES"))
    monkeypatch.setenv("MLNB_TEST_ROLES", json.dumps({"ops": {"key": "k-0123456789", "roles": ["predict", "admin"]}}))
    assert load_keys(ServeSettings("churn@v1", keys_env="MLNB_TEST_ROLES")).entries["ops"]["roles"] == ["predict", "admin"]

def test_an_internal_error_is_a_json_500(models):
    "A failure inside the model (here: made to raise) answers 500 with a JSON body, as every other answer, and the service keeps answering."
    from starlette.testclient import TestClient
    rec = records(models["rows"].head(1))[0]
    with TestClient(app_on(models["registry"], "churn@v1"), raise_server_exceptions=False) as c:
        served = c.app.state.mlnb["served"]
        def boom(rows): raise RuntimeError("boom")
        real, served.predict = served.predict, boom
        r = c.post("/predict", json=rec, headers=APP)
        assert r.status_code == 500 and r.headers["content-type"] == "application/json" and "internal error" in r.json()["detail"]
        served.predict = real
        assert c.post("/predict", json=rec, headers=APP).status_code == 200

@pytest.mark.parametrize("workers", [1, 2])
def test_no_keys_warning_is_given_once(models, workers):
    "Without a key ring the service warns once that every local caller may predict: not once per place the keys are loaded, nor per worker."
    port, log = free_port(), tempfile.TemporaryFile()
    env = {k: v for k, v in os.environ.items() if k != "MLNB_API_KEYS"}
    proc = subprocess.Popen([str(MLNB), "serve", "churn@v1", "--registry", str(models["registry"]), "--port", str(port), "--no-log", "--workers", str(workers)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        ready = 0
        for _ in range(300):                              # new connections reach both workers; each is up once it answers
            try: ready += httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200
            except httpx.TransportError: pass
            if ready >= 20: break
            time.sleep(0.1)
        assert ready >= 20
    finally:
        proc.terminate(); proc.wait(30)
    log.seek(0); out = log.read().decode()
    assert out.count("no API keys configured") == 1 and f"with {workers} worker(s)" in out, out
