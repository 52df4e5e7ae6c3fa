"""Serving benchmark: a bare FastAPI endpoint calling Booster.predict on one row vs the real `mlnb serve`
(API key auth, strict validation, Prometheus metrics and the prediction log all on), measured in the same run.

Load comes from another process on loopback: `wrk` (Debian package) for saturated throughput, and a paced
asyncio client (open loop: latency counts from each request's scheduled time) for p50/p99 at a quarter of the
real service's saturated rate. Batch scoring: `score_file` on 100k rows (Parquet in and out) vs raw
`Booster.predict` on the already-built feature matrix, both single-threaded.

    .venv/bin/python benchmarks/serve.py            # full run, 15 rounds (~9 min)
    .venv/bin/python benchmarks/serve.py --quick    # a smoke run of the harness
"""
import argparse, asyncio, json, os, re, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT/"benchmarks"), str(ROOT/"tests")]
from _report import save_report

KEY = "bench-key-0123456789abcdef"
KEYS = json.dumps({"bench": {"key": KEY, "roles": ["predict"]}})

# ---------------------------------------------------------------- the bare endpoint
def bare_app(model_dir: str):
    "FastAPI + Booster.predict on one row: the floor every real service pays."
    import lightgbm as lgb
    from fastapi import FastAPI, Request
    from starlette.responses import Response
    from mlnb.core import load_json
    booster = lgb.Booster(model_file=f"{model_dir}/model.txt")
    features = load_json(f"{model_dir}/preprocessing.json")["features"]
    app = FastAPI()
    @app.post("/predict")
    async def predict(request: Request):
        rec = json.loads(await request.body())
        x = np.array([[float(rec.get(f) or 0.0) if not isinstance(rec.get(f), str) else 0.0 for f in features]])
        p = booster.predict(x, num_threads=1)
        return Response(json.dumps({"probability": p.tolist()}), media_type="application/json")
    return app

def run_bare(model_dir: str, port: int, workers: int, shared: bool = False):
    "The bare app with `workers` processes: each on its own socket as `mlnb serve` runs them, or (`shared`) uvicorn's own --workers."
    import uvicorn
    from mlnb.serve import run_workers
    os.environ["MLNB_BENCH_MODEL"] = model_dir
    kw = dict(host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning", access_log=False)
    sys.path.insert(0, str(ROOT/"benchmarks"))             # spawned workers inherit sys.path
    if workers > 1 and not shared: run_workers("serve:bare_from_env", workers, **kw)
    else: uvicorn.run("serve:bare_from_env", factory=True, workers=workers, **kw)

def bare_from_env(): return bare_app(os.environ["MLNB_BENCH_MODEL"])

# ---------------------------------------------------------------- servers and load
def start(kind: str, ctx: dict, workers: int):
    from mlnb.serve import free_port
    import httpx
    port = free_port()
    env = {**os.environ, "MLNB_API_KEYS": KEYS, "PYTHONPATH": str(ROOT/"benchmarks")}
    if kind.startswith("bare"): cmd = [sys.executable, __file__, "--bare-server", ctx["model_dir"], str(port), str(workers), str(kind == "bare-shared")]
    else: cmd = [str(Path(sys.executable).parent/"mlnb"), "serve", "churn@production", "--registry", str(ctx["registry"]), "--port", str(port),
                 "--workers", str(workers), "--log-dir", str(ctx["base"]/f"log-{workers}")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)   # its own group: workers stop with it
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.post(f"{url}/predict", json=ctx["record"], headers={"x-api-key": KEY}).status_code == 200: break
        except httpx.TransportError: pass
        time.sleep(0.1)
    else: stop(proc); raise RuntimeError(f"{kind} server did not start")
    return proc, port

def stop(proc):
    "SIGTERM the server's process group (uvicorn's parent and its workers), SIGKILL if it lingers."
    import signal
    os.killpg(proc.pid, signal.SIGTERM)
    try: proc.wait(30)
    except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait()

def wrk(port: int, body: str, seconds: int, connections: int = 32) -> float:
    "Saturated requests/s from wrk (one thread: the machine has 2 cores)."
    lua = Path(tempfile.mkdtemp())/"post.lua"
    lua.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["content-type"] = "application/json"\nwrk.headers["x-api-key"] = "{KEY}"\n')
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), f"http://127.0.0.1:{port}/predict"],
                         capture_output=True, text=True).stdout
    if "Non-2xx" in out: raise RuntimeError(f"wrk saw errors:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

async def _paced(port: int, request: bytes, rate: float, seconds: float, conns: int = 8) -> list[float]:
    "Open-loop load at `rate` req/s; latency of each request from its scheduled send time."
    import uvloop  # noqa: F401
    n, t0, lat, nxt = int(rate * seconds), time.perf_counter() + 0.2, [], [0]
    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (i := nxt[0]) < n:
            nxt[0] += 1
            due = t0 + i / rate
            if (wait := due - time.perf_counter()) > 0: await asyncio.sleep(wait)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"): raise RuntimeError(head[:200])
            lat.append(time.perf_counter() - due)
        writer.close()
    await asyncio.gather(*[worker() for _ in range(conns)])
    return lat

def paced(port: int, body: str, rate: float, seconds: float) -> dict:
    req = (f"POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nx-api-key: {KEY}\r\n"
           f"content-length: {len(body.encode())}\r\n\r\n{body}").encode()
    import uvloop
    lat = uvloop.run(_paced(port, req, rate, seconds))
    q = np.quantile(np.array(lat) * 1000, [0.5, 0.99])
    return dict(rate=round(rate), p50_ms=round(float(q[0]), 3), p99_ms=round(float(q[1]), 3), n=len(lat))

def client_process(port, body, rate, seconds):
    "Run `paced` in its own process (the load generator must not share the server's interpreter)."
    out = subprocess.run([sys.executable, __file__, "--paced", str(port), body, str(rate), str(seconds)], capture_output=True, text=True)
    if out.returncode: raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])

# ---------------------------------------------------------------- the model
def build_model(base: Path, rounds: int) -> dict:
    from test_serve import churn_rows, build
    from mlnb.registry import set_alias
    registry = base/"registry"
    rows = churn_rows(20_000, 0)
    v = build(registry, rows, rounds)
    set_alias(registry, "churn", "production", v, reason="benchmark")
    rec = json.loads(rows.drop("customer_id", "email", "churned").head(1).write_json())[0]
    return dict(base=base, registry=registry, model_dir=str(registry/"churn"/v), record=rec)

def batch(ctx: dict, n: int) -> dict:
    from test_serve import churn_rows
    from mlnb.registry import ModelPackage
    from mlnb.serve import score_file
    package = ModelPackage(ctx["model_dir"])
    rows = churn_rows(n, 7)
    src, dest = ctx["base"]/"rows.parquet", ctx["base"]/"scored.parquet"
    rows.write_parquet(src)
    X = package.preprocessor.transform(rows).to_numpy()
    raw, scored = [], []
    for _ in range(3):
        t = time.perf_counter(); package.booster.predict(X, num_threads=1); raw.append(time.perf_counter() - t)
        t = time.perf_counter(); score_file(package, src, dest); scored.append(time.perf_counter() - t)
    return dict(rows=n, raw_rows_s=round(n / min(raw)), batch_rows_s=round(n / min(scored)), ratio=round(min(raw) / min(scored), 3))

SERVERS = (("bare", 1), ("real", 1), ("bare", 2), ("real", 2), ("bare-shared", 2))

def main(quick: bool, rounds: int):
    seconds, trees = (3, 50) if quick else (4, 200)
    rounds = 1 if quick else rounds
    base = Path(tempfile.mkdtemp(prefix="mlnb-bench-serve-"))
    ctx = build_model(base, trees)
    body = json.dumps(ctx["record"])
    res = dict(trees=trees, seconds=seconds, rounds=rounds, record=ctx["record"])
    servers = {}
    try:
        try:
            for kind, workers in SERVERS:                         # all of them up at once: idle ones cost nothing, and a round takes
                servers[kind, workers] = start(kind, ctx, workers)  # seconds, so the machine's drift barely moves a ratio within it
            for rnd in range(rounds):                             # each round runs every server once, in an order that rotates
                for kind, workers in SERVERS[rnd % len(SERVERS):] + SERVERS[:rnd % len(SERVERS)]:
                    port = servers[kind, workers][1]
                    wrk(port, body, 1)                            # warm-up
                    res.setdefault(f"{kind}_{workers}w_rps_rounds", []).append(round(wrk(port, body, seconds)))
                    if workers == 1:                              # latency at a quarter of this server's saturated rate, every round
                        res.setdefault(f"{kind}_1w_latency_rounds", []).append(client_process(port, body, res[f"{kind}_1w_rps_rounds"][-1] / 4, seconds))
        finally:                                                  # stopped before batch scoring, which then has the cores to itself
            for proc, _ in servers.values(): stop(proc)
        res["batch"] = batch(ctx, 20_000 if quick else 100_000)
    finally: shutil.rmtree(base, ignore_errors=True)
    med = lambda xs: round(statistics.median(xs), 3)
    per_round = lambda a, b: [x / y for x, y in zip(res[f"{a}_rps_rounds"], res[f"{b}_rps_rounds"])]
    for kind, workers in SERVERS: res[f"{kind}_{workers}w_rps"] = round(statistics.median(res[f"{kind}_{workers}w_rps_rounds"]))
    res["real_vs_bare_1w"], res["real_vs_bare_2w"] = med(per_round("real_1w", "bare_1w")), med(per_round("real_2w", "bare_2w"))
    res["real_2w_vs_1w"], res["bare_2w_vs_1w"] = med(per_round("real_2w", "real_1w")), med(per_round("bare_2w", "bare_1w"))
    res["shared_vs_reuseport_2w"] = med(per_round("bare-shared_2w", "bare_2w"))
    for kind in ("bare", "real"):
        runs = res[f"{kind}_1w_latency_rounds"]
        res[f"{kind}_1w_latency"] = {k: med([x[k] for x in runs]) for k in ("rate", "p50_ms", "p99_ms")} | {f"{k}_range": [min(x[k] for x in runs), max(x[k] for x in runs)] for k in ("p50_ms", "p99_ms")}
    r, lat = res, res["real_1w_latency"]
    ok = lambda b: "yes" if b else "**no**"
    spread = lambda key: f"{min(r[key + '_rps_rounds']):,}-{max(r[key + '_rps_rounds']):,}"
    text = f"""Model: LightGBM binary, {trees} trees, the default config's preprocessing (categories, clip bounds, 3 SQL-derived features).
Load: `wrk -t1 -c32 -d{seconds}s` (after a 1 s warm-up) from another process on loopback. All five servers run side by side (idle but
for the one under load); {rounds} round(s), each loading every server once in an order that rotates from round to round; each ratio is
the **median of the per-round ratios** (req/s: median, with the range over rounds).
Latency: a paced open-loop client in its own process (from each request's scheduled time), every round; medians over rounds.
The real service has API-key auth, strict pydantic validation, Prometheus metrics (multiprocess mode with 2 workers) and the
Parquet prediction log on. Workers: `mlnb serve --workers 2` gives each worker its own `SO_REUSEPORT` socket; the bare endpoint is
run the same way, and once more under uvicorn's own `--workers` (one shared socket) for comparison.

| measure | bare FastAPI + Booster.predict | real `mlnb serve` | ratio | target | met |
|---|---|---|---|---|---|
| 1 worker, saturated req/s | {r['bare_1w_rps']:,} ({spread('bare_1w')}) | {r['real_1w_rps']:,} ({spread('real_1w')}) | {r['real_vs_bare_1w']} | ≥ 0.7 | {ok(r['real_vs_bare_1w'] >= 0.7)} |
| 2 workers, saturated req/s | {r['bare_2w_rps']:,} ({spread('bare_2w')}) | {r['real_2w_rps']:,} ({spread('real_2w')}) | {r['real_vs_bare_2w']} | ≥ 0.7 | {ok(r['real_vs_bare_2w'] >= 0.7)} |
| 2 workers / 1 worker | {r['bare_2w_vs_1w']} | {r['real_2w_vs_1w']} | | ≥ 1.7 (real) | {ok(r['real_2w_vs_1w'] >= 1.7)} |
| 1 worker at ¼ of its saturated rate (real: {lat['rate']:,.0f} req/s): p50 / p99 | {r['bare_1w_latency']['p50_ms']} / {r['bare_1w_latency']['p99_ms']} ms | {lat['p50_ms']} / {lat['p99_ms']} ms (p99 {lat['p99_ms_range'][0]}-{lat['p99_ms_range'][1]}) | | ≤ 1 / ≤ 4 ms | {ok(lat['p50_ms'] <= 1 and lat['p99_ms'] <= 4)} |
| batch scoring {r['batch']['rows']:,} rows (Parquet → Parquet), rows/s | raw Booster.predict {r['batch']['raw_rows_s']:,} | `score_file` {r['batch']['batch_rows_s']:,} | {r['batch']['ratio']} | ≥ 0.8 | {ok(r['batch']['ratio'] >= 0.8)} |

For comparison, the bare endpoint under uvicorn's `--workers 2` (one socket shared by both workers): {r['bare-shared_2w_rps']:,} req/s
({spread('bare-shared_2w')}), {r['shared_vs_reuseport_2w']} of the same endpoint with a socket per worker. With a shared socket the worker
that wakes first accepts a whole burst of connections, so a run now and then serves nearly everything from one worker.
(2 shared cores: the load generator competes with the servers; the 2-worker figures are bounded by that.)
"""
    save_report("serve", res, text, readme=not quick)

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-server": run_bare(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "True")
    elif len(sys.argv) > 1 and sys.argv[1] == "--paced": print(json.dumps(paced(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))))
    else:
        ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        ap.add_argument("--quick", action="store_true", help="short runs and a small model: checks the harness")
        ap.add_argument("--rounds", type=int, default=15, help="rounds of every server (medians over rounds)")
        args = ap.parse_args()
        if not shutil.which("wrk"): sys.exit("benchmarks/serve.py: wrk is not on PATH; install it (Debian: apt-get install wrk) and run again.")
        main(args.quick, args.rounds)
