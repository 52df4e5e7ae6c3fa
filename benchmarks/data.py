"""Data benchmark: generate, collect, validate and build features on large synthetic data, with a pandas baseline.

    python benchmarks/data.py                                  # 1M and 10M customers, 5 repeats of the feature stages
    python benchmarks/data.py --sizes 1000000 --repeats 3
    python benchmarks/data.py --sizes 1000000 10000000 --large-repeats 1

Each stage runs in its own Python process, reading the previous stage's output from disk, so its peak
RSS is its own (`ru_maxrss` of the finished child, from `os.wait4`):
  generate         `mlnb.data.write_churn_sources`: the default sources (SQLite customers, CSV billing,
                   JSONL events) for N customers; `events_scale` = min(1, 1M / N), so there are about
                   8M events at most (10M customers would otherwise make 80M);
  collect          `mlnb.data.collect_sources` on the default config's sources (joins, event aggregation,
                   date parsing), PII dropped, sorted by id, `save_snapshot` (zstd Parquet + manifest);
  validate         step 01's checks: `infer_contract` on the snapshot, then `validate_snapshot` against it
                   (structure, missing values, ranges, the contract through pandera, labels, outliers, leakage);
  features         step 02's feature work in polars: `infer_task`, `split_frame` (stratified),
                   `Preprocessor.fit(df, pl.col("split") == "train")` (derived features, category codes with rare
                   grouping, feature selection, train-quantile clip bounds, medians) and `transform` of every row,
                   as steps 02 and 03 do it: fit computes the train rows' features in its selection pass, and
                   transform computes them again;
  pandas-features  the same feature work written in pandas/numpy (same snapshot, same settings, the same
                   derived features, rare grouping, selection, clip bounds and medians, a stratified split), each
                   feature computed once for all rows; selection on the train rows by the same rules (missing share;
                   constant = all missing, or none missing and min == max; duplicates by an order-free hash, then
                   compared); clip quantiles and medians on the same seeded sample of train rows
                   (`mlnb.features.sample_positions`, 100,000 rows).
`--stage check` (not part of the run) asserts that both produce the same features, dropped columns, clip bounds and
medians on the same split.
rows/s = snapshot rows (customers) / seconds of the stage's work, timed inside the process (interpreter start
and imports excluded; for the feature stages, reading the Parquet snapshot is timed separately and excluded
from the throughput). The feature stages are repeated (`--repeats`, medians; `--large-repeats` above 2M rows),
polars and pandas alternating (ABBA), so a slow spell of the machine falls on both.
Generated data lives in a temporary folder under /tmp, deleted after each size. The figures are written between
the markers in benchmarks/README.md and to benchmarks/results/data.json.
"""
import argparse, json, os, platform, resource, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path
from _report import save_report

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024 ** 3
STAGES = ("generate", "collect", "validate", "features", "pandas-features")

# ---------------------------------------------------------------- stages (each runs in a child process)

def _config():
    from mlnb.config import Config
    return Config()

def _sources(cfg, churn:Path):
    "The default config's sources, pointed at the generated folder."
    out = []
    for s in cfg.data.sources:
        rel = Path(s.path).relative_to(Path(s.path).parents[1] if s.kind == "jsonl" else Path(s.path).parent)
        out.append(s.model_copy(update={"path": str(churn/rel)}))
    return out

def stage_generate(work:Path, rows:int)->dict:
    from mlnb.config import Synthetic
    from mlnb.data import write_churn_sources
    scale = min(1.0, 1_000_000 / rows)
    t = time.perf_counter()
    write_churn_sources(Synthetic(rows=rows, seed=0, dir=str(work/"churn")), events_scale=scale)
    secs = time.perf_counter() - t
    size = sum(f.stat().st_size for f in (work/"churn").rglob("*") if f.is_file())
    return dict(seconds=secs, events_scale=scale, source_bytes=size)

def stage_collect(work:Path, rows:int)->dict:
    from mlnb.data import collect_sources, protect_pii, save_snapshot
    cfg = _config()
    t = time.perf_counter()
    df, records = collect_sources(_sources(cfg, work/"churn"))
    pii = [c for c in cfg.data.pii if c in df.columns]
    df = protect_pii(df, pii, "drop").sort(cfg.data.id_column)
    m = save_snapshot(df, work/"snapshot"/"snapshot.parquet", records, {"mode": "drop", "columns": pii})
    secs = time.perf_counter() - t
    assert m["rows"] == rows, (m["rows"], rows)
    return dict(seconds=secs, events=records[-1]["rows"], snapshot_bytes=(work/"snapshot"/"snapshot.parquet").stat().st_size)

def stage_validate(work:Path, rows:int)->dict:
    import polars as pl
    from mlnb.validate import infer_contract, validate_snapshot, failures
    cfg = _config()
    data, rules = cfg.data, cfg.validation
    t = time.perf_counter()
    df = pl.read_parquet(work/"snapshot"/"snapshot.parquet")
    contract = infer_contract(df, data.target, data.id_column, rules.range_margin, rules.null_headroom, rules.max_categories)
    report = validate_snapshot(df, data, rules, contract)
    secs = time.perf_counter() - t
    errors = failures(report)
    assert errors.height == 0, errors
    return dict(seconds=secs, checks=report.height, warnings=failures(report, "warning").height)

def _read_snapshot(work:Path, read)->tuple:
    "The snapshot read with `read` (polars' or pandas' read_parquet), and the seconds the read took (kept out of the throughput)."
    t = time.perf_counter()
    df = read(work/"snapshot"/"snapshot.parquet")
    return df, time.perf_counter() - t

def stage_features(work:Path, rows:int)->dict:
    import numpy.ma, numpy.random   # loaded on first use (polars' numpy conversion, the sample's draw); pandas loads both itself
    import polars as pl
    from mlnb.features import Preprocessor, excluded_columns, infer_task, split_frame
    cfg = _config()
    data, opt = cfg.data, cfg.features
    df, read_seconds = _read_snapshot(work, pl.read_parquet)
    t = [time.perf_counter()]
    task = infer_task(df[data.target], cfg.problem.task)
    df = split_frame(df, opt.split, opt.valid_size, opt.test_size, cfg.seed, target=data.target if task != "regression" else None,
                     time_column=data.time_column, group_column=opt.group_column)
    t.append(time.perf_counter())
    exclude = excluded_columns(cfg)
    settings = opt.model_dump(include={"clip_quantiles", "rare_min_count", "impute", "scale", "max_missing"})
    pre = Preprocessor(data.target, opt.derived, exclude, **settings).fit(df, pl.col("split") == "train")
    t.append(time.perf_counter())
    X = pre.transform(df)
    t.append(time.perf_counter())
    assert X.height == rows
    counts = df.group_by("split").len().sort("split").rows()
    return dict(seconds=t[-1] - t[0], read_seconds=read_seconds, features=X.width, splits=dict(counts),
                phases=dict(split=t[1] - t[0], fit=t[2] - t[1], transform=t[3] - t[2]))

RARE = "__rare__"

def pandas_features(df, target:str, exclude:list, seed:int, valid_size:float, test_size:float, rare_min_count:int,
                    clip_quantiles:tuple, max_missing:float, split=None, sample_rows:int=100_000):
    "Step 02's feature work in pandas: stratified split, derived features, rare-grouped codes, selection, clip, medians."
    import numpy as np, pandas as pd
    from mlnb.features import sample_positions
    y = df[target].to_numpy()
    if split is None:                                         # stratified: a random rank within each class
        rng, pos = np.random.default_rng(seed), np.empty(len(df))
        for cls in np.unique(y):
            idx = np.flatnonzero(y == cls)
            pos[idx] = rng.permutation(idx.size) / idx.size
        split = np.where(pos < test_size, "test", np.where(pos < test_size + valid_size, "valid", "train"))
    train = np.asarray(split) == "train"
    skip = {target, *exclude}
    base = [c for c in df.columns if c not in skip and (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_string_dtype(df[c]))
            and not pd.api.types.is_datetime64_any_dtype(df[c])]
    texts = [c for c in base if not pd.api.types.is_numeric_dtype(df[c])]
    X = pd.DataFrame(index=df.index)
    for c in base:
        if c in texts:                                         # category codes: frequent in train, else the rare code
            counts = df.loc[train, c].value_counts(dropna=True)
            counts = counts.rename_axis("v").reset_index(name="n").sort_values(["n", "v"], ascending=[False, True])
            frequent = counts.loc[counts["n"] >= rare_min_count, "v"].tolist()
            cats = frequent + ([RARE] if len(frequent) < len(counts) else [])
            codes = pd.Categorical(df[c], categories=frequent).codes.astype("float64")
            other = float(cats.index(RARE)) if RARE in cats else np.nan
            X[c] = np.where(codes >= 0, codes, np.where(df[c].isna(), np.nan, other))
        else: X[c] = df[c].astype("float64")
    X["log_tenure"] = np.log(1 + df["tenure_days"].astype("float64"))
    X["events_per_month"] = df["n_events"] * 30.0 / (1 + df["tenure_days"])
    X["signup_month"] = pd.to_datetime(df["signup_date"]).dt.month.astype("float64")
    Xt = X[train]                                              # feature selection on the train rows
    dropped, seen = {}, {}
    for c in Xt.columns:                                       # constant: all missing, or none missing and min == max
        v = Xt[c].to_numpy()
        m = int(np.isnan(v).sum())
        if m / max(len(v), 1) > max_missing or not len(v): dropped[c] = "mostly missing"
        elif m == len(v) or (m == 0 and v.min() == v.max()): dropped[c] = "constant"
        else:
            h = int(pd.util.hash_pandas_object(Xt[c], index=False).sum())
            twin = next((o for o in seen.get(h, []) if Xt[o].equals(Xt[c])), None)
            if twin: dropped[c] = f"duplicate of {twin}"
            else: seen.setdefault(h, []).append(c)
    features = [c for c in X.columns if c not in dropped]
    numeric = [c for c in features if c not in texts]
    pos = sample_positions(len(Xt), sample_rows)               # order statistics: the same seeded sample of train rows
    sample = Xt[numeric] if pos is None else Xt[numeric].iloc[pos]
    clip = {}
    for c in numeric:                                          # clip bounds: train quantiles of finite values
        v = sample[c][np.isfinite(sample[c])]
        if len(v): clip[c] = [float(v.quantile(clip_quantiles[0], interpolation="nearest")), float(v.quantile(clip_quantiles[1], interpolation="nearest"))]
    X = X[features]
    for c, (lo, hi) in clip.items(): X[c] = X[c].clip(lo, hi)
    clipped = {c: sample[c].clip(*clip.get(c, (None, None))) for c in numeric}   # medians: of the clipped finite values
    medians = {c: float(v[np.isfinite(v)].median()) if np.isfinite(v).any() else 0.0 for c, v in clipped.items()}
    return X, split, dict(clip=clip, medians=medians, dropped=dropped)

def stage_pandas_features(work:Path, rows:int)->dict:
    import pandas as pd
    from mlnb.features import excluded_columns
    cfg = _config()
    data, opt = cfg.data, cfg.features
    df, read_seconds = _read_snapshot(work, pd.read_parquet)
    t = time.perf_counter()
    exclude = excluded_columns(cfg)
    X, split, fitted = pandas_features(df, data.target, exclude, cfg.seed, opt.valid_size, opt.test_size, opt.rare_min_count,
                                       tuple(opt.clip_quantiles), opt.max_missing)
    secs = time.perf_counter() - t
    assert len(X) == rows
    return dict(seconds=secs, read_seconds=read_seconds, features=X.shape[1], splits=dict(pd.Series(split).value_counts().sort_index().items()))

def check_same(work:Path)->float:
    "Largest absolute difference between the polars and pandas feature frames on the same split (a correctness check)."
    import numpy as np, pandas as pd, polars as pl
    from mlnb.features import Preprocessor, excluded_columns, split_frame
    cfg = _config()
    data, opt = cfg.data, cfg.features
    df = split_frame(pl.read_parquet(work/"snapshot"/"snapshot.parquet"), opt.split, opt.valid_size, opt.test_size, cfg.seed, target=data.target)
    exclude = excluded_columns(cfg)
    settings = opt.model_dump(include={"clip_quantiles", "rare_min_count", "impute", "scale", "max_missing"})
    pre = Preprocessor(data.target, opt.derived, exclude, **settings).fit(df, pl.col("split") == "train")
    X = pre.transform(df)
    again = Preprocessor(data.target, opt.derived, exclude, **settings).fit(df.filter(pl.col("split") == "train"))
    assert again.to_dict() == pre.to_dict()                   # fitting on the train rows alone learns the same
    a = X.to_pandas()
    b, _, fitted = pandas_features(pd.read_parquet(work/"snapshot"/"snapshot.parquet"), data.target, exclude, cfg.seed, opt.valid_size,
                                   opt.test_size, opt.rare_min_count, tuple(opt.clip_quantiles), opt.max_missing, split=df["split"].to_numpy())
    assert sorted(a.columns) == sorted(b.columns), (a.columns, b.columns)
    assert fitted["dropped"] == pre.dropped_, (fitted["dropped"], pre.dropped_)
    assert fitted["clip"] == pre.clip_, (fitted["clip"], pre.clip_)
    assert all(abs(fitted["medians"][c] - pre.medians_[c]) < 1e-9 for c in fitted["medians"]), (fitted["medians"], pre.medians_)
    return max(float(np.nanmax(np.abs(a[c].to_numpy() - b[c].to_numpy()))) if len(a) else 0.0 for c in a.columns)

# ---------------------------------------------------------------- the driver

def run_stage(stage:str, work:Path, rows:int)->dict:
    "Run one stage in a fresh process; its result plus wall time and peak RSS (GiB) of that process alone."
    out = work/f".{stage}.json"
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, __file__, "--stage", stage, "--work", str(work), "--rows", str(rows), "--out", str(out)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = p.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode: sys.exit(f"stage {stage} at {rows:,} rows failed (exit {p.returncode}):\n{log[-4000:]}")
    res = json.loads(out.read_text())
    return res | dict(wall_s=time.perf_counter() - t, peak_rss_gib=usage.ru_maxrss * 1024 / GIB)

def bench_size(rows:int, repeats:int, base:Path)->dict:
    work = Path(tempfile.mkdtemp(prefix=f"mlnb-data-{rows}-", dir=base))
    try:
        res, pair = {}, ("features", "pandas-features")
        def record(stage:str, runs:list[dict], load:float):
            secs = statistics.median(r["seconds"] for r in runs)
            res[stage] = runs[0] | dict(seconds=secs, rows_per_s=rows / secs, peak_rss_gib=max(r["peak_rss_gib"] for r in runs),
                                       repeats=len(runs), all_seconds=[r["seconds"] for r in runs], load_avg=load)
            print(f"{rows:>12,} {stage:<16} {secs:8.2f} s  {rows / secs:>14,.0f} rows/s  peak RSS {res[stage]['peak_rss_gib']:.2f} GiB"
                  + (f"  (runs: {', '.join(f'{r:.2f}' for r in res[stage]['all_seconds'])})" if len(runs) > 1 else ""), flush=True)
        for stage in STAGES:
            if stage not in pair: record(stage, [run_stage(stage, work, rows)], os.getloadavg()[0])   # load inflates wall times
        load, runs = os.getloadavg()[0], {s: [] for s in pair}
        for i in range(repeats):                 # the two feature stages alternate (ABBA), so both meet the same machine
            for stage in (pair if i % 2 == 0 else pair[::-1]): runs[stage].append(run_stage(stage, work, rows))
        for stage in pair: record(stage, runs[stage], load)
        res["speedup"] = res["pandas-features"]["seconds"] / res["features"]["seconds"]
        res["round_ratios"] = [p["seconds"] / f["seconds"] for f, p in zip(runs["features"], runs["pandas-features"])]
        res["peak_rss_gib"] = max(res[s]["peak_rss_gib"] for s in STAGES)
        return res
    finally: shutil.rmtree(work, ignore_errors=True)

def report(results:dict, machine:str)->str:
    rows = []
    for n, r in results.items():
        for s in STAGES:
            x = r[s]
            rows.append(f"| {int(n):,} | {s} | {x['seconds']:.2f} | {x['rows_per_s']:,.0f} | {x['peak_rss_gib']:.2f} | {x['repeats']} |")
    speed = "\n".join(f"| feature step, {int(n):,} rows: polars / pandas throughput | {r['speedup']:.1f}x | ≥ 5x {'✅' if r['speedup'] >= 5 else '❌'} |"
                      for n, r in results.items())
    big = [(n, r) for n, r in results.items() if int(n) >= 10_000_000]
    rss = "\n".join(f"| largest peak RSS of any stage, {int(n):,} rows | {r['peak_rss_gib']:.2f} GiB | ≤ 8 GiB {'✅' if r['peak_rss_gib'] <= 8 else '❌'} |"
                    for n, r in big) or "| largest peak RSS at 10M rows | not measured in this run | ≤ 8 GiB |"
    gen = "; ".join(f"{int(n):,} customers: events_scale {r['generate']['events_scale']:g}, {r['collect']['events']:,} events, "
                    f"sources {r['generate']['source_bytes'] / GIB:.2f} GiB, snapshot {r['collect']['snapshot_bytes'] / 2**20:.0f} MiB"
                    for n, r in results.items())
    phases = "; ".join(f"{int(n):,} rows: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["features"]["phases"].items())
                       for n, r in results.items() if "phases" in r["features"])
    phases = f"\nWhere the polars feature stage spends its time (first repeat): {phases}.\n" if phases else ""
    spread = "; ".join(f"{int(n):,} rows: polars {', '.join(f'{x:.2f}' for x in r['features']['all_seconds'])}, pandas "
                       f"{', '.join(f'{x:.2f}' for x in r['pandas-features']['all_seconds'])}" for n, r in results.items()
                       if r["features"]["repeats"] > 1 and "all_seconds" in r["features"])
    phases += f"Every repeat of the feature stages, in seconds: {spread}.\n" if spread else ""
    rounds = "; ".join(f"{int(n):,} rows: {', '.join(f'{x:.1f}' for x in r['round_ratios'])}" for n, r in results.items()
                       if len(r.get("round_ratios", [])) > 1)
    phases += f"pandas / polars seconds in each alternated pair: {rounds}.\n" if rounds else ""
    load = "; ".join(f"{int(n):,} rows: {r['features']['load_avg']:.1f} / {r['pandas-features']['load_avg']:.1f}"
                     for n, r in results.items() if "load_avg" in r["features"])
    phases += (f"Load average (1 min) when the polars / pandas feature stages started: {load} (above 2, other processes "
               "shared the 2 cores and inflated the wall times).\n") if load else ""
    return f"""Machine: {machine}. Rows = customers (snapshot rows). Data: {gen}.
Feature stages: median of the repeats shown (peak RSS: the largest); other stages run once.

| rows | stage | seconds | rows/s | peak RSS GiB | repeats |
|---|---|---|---|---|---|
{chr(10).join(rows)}

| target | measured | |
|---|---|---|
{speed}
{rss}

Seconds exclude interpreter start and imports (also of `numpy.random` and `numpy.ma`, which numpy and polars load on
first use and pandas loads with itself); the feature stages also exclude reading the snapshot
(polars `read_parquet`, pandas `read_parquet` with its default dtypes), so both sides are timed on the same work:
a stratified split, a fit on the train rows (selection statistics over every train row; clip quantiles and medians
on the same seeded sample of 100,000 train rows) and the feature frame of every row. pandas computes each feature
once; polars computes the train rows' features twice (in `fit`'s one selection pass, then in `transform`), as the
pipeline does. `--stage check` asserts both give the same features, dropped columns, clip bounds and medians.
{phases}"""

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000], help="customers per size")
    ap.add_argument("--repeats", type=int, default=5, help="repeats of the feature stages, alternated (median)")
    ap.add_argument("--large-repeats", type=int, default=1, help="repeats of the feature stages above 2M rows")
    ap.add_argument("--tmp", default="/tmp", help="where the generated data goes (deleted after each size)")
    ap.add_argument("--no-readme", action="store_true", help="do not write benchmarks/README.md")
    ap.add_argument("--stage", choices=STAGES + ("check",), help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage == "check":
        print(f"largest |polars - pandas| feature difference on the same split: {check_same(Path(args.work))}"); return
    if args.stage:
        res = globals()["stage_" + args.stage.replace("-", "_")](Path(args.work), args.rows)
        Path(args.out).write_text(json.dumps(res | dict(self_maxrss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB)))
        return
    import pandas, polars
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}; "
               f"polars {polars.__version__}, pandas {pandas.__version__} (vectorised numpy/pandas code, its default string dtype)")
    results = {}
    for n in args.sizes:   # figures are written after each size, so a failed larger size keeps the smaller ones
        results[str(n)] = bench_size(n, args.repeats if n <= 2_000_000 else args.large_repeats, Path(args.tmp))
        write(results, machine, args.no_readme)

def write(results:dict, machine:str, no_readme:bool=False):
    save_report("data", dict(machine=machine, results=results), report(results, machine), readme=not no_readme)

if __name__ == "__main__":
    main()
