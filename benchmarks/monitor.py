"""Drift on 1M rows x 50 features (mixed numeric/categorical): mlnb.monitor's report, timed.

    .venv/bin/python benchmarks/monitor.py            # the full measurement (1M rows, 50 features, 3 repeats)
    .venv/bin/python benchmarks/monitor.py --quick    # 100k rows, 1 repeat, README untouched

Times, in one process on data already in memory: the reference statistics on the training frame (done once, at
packaging time), reading the batch from Parquet, and the drift report (PSI, KS, JS, data quality, prediction drift
and the status of every column). For scale, scipy's exact two-sample KS test on the full numeric columns is timed too.
"""
import argparse, os, platform, resource, statistics, sys, tempfile, time
from pathlib import Path
import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import save_report
from mlnb.monitor import drift_report, drift_table, load_batch, reference_stats, retrain_decision
from mlnb.config import MonitorCfg

def frame(rows: int, features: int, seed: int, drift: float) -> pl.DataFrame:
    "`features` columns: 70% numeric (some with missing values), 30% text with 5-40 categories; `drift` shifts a third of them."
    rng, cols = np.random.default_rng(seed), {}
    n_num = round(features * 0.7)
    for i in range(n_num):
        shift = drift * (i % 3 == 0)
        x = rng.normal(i + shift, 1 + i % 4, rows) if i % 2 else rng.gamma(2 + i % 3, 1 + shift, rows)
        if i % 5 == 0: x[rng.random(rows) < 0.03] = np.nan
        cols[f"num_{i}"] = x
    for j in range(features - n_num):
        k = 5 + (j * 7) % 36
        p = np.linspace(1, 3, k)[::-1 if drift and j % 3 == 0 else 1]; p /= p.sum()
        cols[f"cat_{j}"] = rng.choice(k, rows, p=p)
    cols["probability"] = rng.beta(2, 5 - 2 * drift, rows)
    df = pl.DataFrame(cols)
    return df.with_columns([pl.format("c{}", pl.col(f"cat_{j}")).alias(f"cat_{j}") for j in range(features - n_num)]).fill_nan(None)

CPU = {}

def timed(fn, repeats: int, name: str = ""):
    "Median wall seconds of `repeats` calls, and the last result; the median CPU seconds go to CPU[name]."
    times, cpu, out = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time(); out = fn()
        times.append(time.perf_counter() - t); cpu.append(time.process_time() - c)
    CPU[name] = statistics.median(cpu)
    return statistics.median(times), out

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="100k rows, 1 repeat, README untouched")
    ap.add_argument("--no-scipy", action="store_true", help="skip the scipy comparison")
    a = ap.parse_args(argv)
    if a.quick: a.rows, a.repeats = 100_000, 1
    train, batch = frame(a.rows, a.features, 0, 0.0), frame(a.rows, a.features, 1, 1.0)
    features = [c for c in train.columns if c != "probability"]
    categorical = [c for c in features if c.startswith("cat_")]
    t_ref, ref = timed(lambda: reference_stats(train, features, categorical, predictions=train["probability"]), a.repeats, "reference")
    ref_bytes = len(__import__("json").dumps(ref, separators=(",", ":")))
    with tempfile.TemporaryDirectory() as d:
        batch.write_parquet(Path(d)/"batch.parquet")
        t_read, loaded = timed(lambda: load_batch(Path(d)/"batch.parquet"), a.repeats, "read")
    cfg = MonitorCfg()
    t_drift, report = timed(lambda: drift_report(ref, loaded, cfg), a.repeats, "drift")
    table = drift_table(report)
    decision = retrain_decision(report, cfg, 10)
    expected = {c for i, c in enumerate(c for c in features if c.startswith("num_")) if i % 3 == 0} | \
               {c for j, c in enumerate(categorical) if j % 3 == 0} | {"probability"}
    found = set(table.filter(pl.col("status") == "drift")["column"])
    t_scipy = None
    if not a.no_scipy:
        import scipy.stats
        num = [c for c in features if c.startswith("num_")]
        t_scipy, _ = timed(lambda: [scipy.stats.ks_2samp(train[c].drop_nulls().to_numpy(), loaded[c].drop_nulls().to_numpy()) for c in num], 1, "scipy")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    results = dict(rows=a.rows, features=a.features, categorical=len(categorical), repeats=a.repeats, reference_s=t_ref, reference_bytes=ref_bytes,
                   read_s=t_read, drift_s=t_drift, cpu_s=dict(CPU), load_average=os.getloadavg(), total_s=t_read + t_drift, scipy_ks_s=t_scipy, peak_rss_gib=rss,
                   drifted_expected=sorted(expected), drifted_found=sorted(found), retrain=decision["retrain"],
                   machine=dict(cpu=platform.machine(), cores=os.cpu_count(), python=platform.python_version(), polars=pl.__version__, numpy=np.__version__))
    ok = lambda v, limit: "✅" if v <= limit else "❌"
    text = f"""Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, polars {pl.__version__}, numpy {np.__version__}.
Data: {a.rows:,} rows x {a.features} features ({a.features - len(categorical)} numeric, some with 3% missing; {len(categorical)} text with 5-40 categories)
plus a prediction column; the batch shifts every third column and the predictions. Medians of {a.repeats} repeat(s).

| measure | wall s | CPU s | target |
|---|---|---|---|
| reference statistics of the training frame (once, at packaging) | {t_ref:.2f} | {CPU["reference"]:.2f} | |
| read the batch (Parquet, `load_batch`) | {t_read:.2f} | {CPU["read"]:.2f} | |
| drift report: PSI, KS, JS, data quality, prediction drift, status | {t_drift:.2f} | {CPU["drift"]:.2f} | |
| read + drift | {t_read + t_drift:.2f} | {CPU["read"] + CPU["drift"]:.2f} | ≤ 10 {ok(t_read + t_drift, 10)} |
{f"| for scale: scipy `ks_2samp` on the {a.features - len(categorical)} full numeric columns only | {t_scipy:.2f} | {CPU['scipy']:.2f} | |" if t_scipy is not None else ""}

reference.json: {ref_bytes / 1024:.0f} kB. Columns flagged as drift: {len(found & expected)} of the {len(expected)} shifted, {len(found - expected)} false alarms.
Peak RSS of the whole benchmark process (both frames in memory): {rss:.2f} GiB. Load average when measured: {os.getloadavg()[0]:.1f}
(above 2, other processes shared the 2 cores and inflated the wall times; CPU time is summed over the process's threads).
"""
    save_report("monitor", results, text, readme=not a.quick)
    return 0 if found == expected else 1

if __name__ == "__main__":
    sys.exit(main())
