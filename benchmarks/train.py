"""Training benchmark: mlnb's training wrappers and SHAP path against raw LightGBM on the same arrays, and tuning speed.

    python benchmarks/train.py                    # 140k x 15 rows (the default run's training split), 5 repeats
    python benchmarks/train.py --quick            # 20k rows, 3 repeats, a few seconds (no README update)

In one process, on the same float matrix (numeric and categorical-code columns, some missing values):
  fit     mlnb.train.fit_lgbm (Dataset, callbacks, learning curve)  vs  lgb.train, same params and rounds
  cv      mlnb.train.cross_validate (lgb.cv + OOF predictions + per-fold metrics)  vs  lgb.cv + per-fold predict
  shap    mlnb.evaluate's contributions function  vs  booster.predict(pred_contrib=True)
  tune    mlnb.tune.tune on train/valid: trials per minute (TPE, pruning, SQLite storage as in the pipeline)
Runs alternate (raw, mlnb, raw, mlnb, ...) and medians are reported. Targets: fit and cv overhead <= 5%,
SHAP <= 1.1x raw. The figures go between the `train` markers in benchmarks/README.md.
"""
import argparse, platform, statistics, sys, tempfile, time
import numpy as np
import lightgbm as lgb
from _report import save_report
from mlnb.config import TrainCfg
from mlnb.train import cross_validate, cv_splits, fit_lgbm, lgb_params, score
from mlnb.tune import tune

def contributions_fn():
    "The SHAP path of step 05, whatever it is called there now."
    import mlnb.evaluate as ev
    for name in ("contributions", "shap_values", "shap_contributions"):
        if hasattr(ev, name): return name, getattr(ev, name)
    return None, None

def make_data(rows: int, seed: int = 0):
    "A churn-like matrix: 12 numeric columns (5% missing) and 3 categorical codes; a non-linear binary target."
    rng = np.random.default_rng(seed)
    num = rng.normal(size=(rows, 12)); num[rng.random(num.shape) < 0.05] = np.nan
    cat = rng.integers(0, 6, size=(rows, 3)).astype(float)
    logit = np.nan_to_num(num[:, 0]) * 1.2 - np.nan_to_num(num[:, 1]) ** 2 + (cat[:, 0] == 2) - 0.5 * np.nan_to_num(num[:, 2] * num[:, 3]) - 1.5
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return np.hstack([num, cat]), y, [f"x{i}" for i in range(12)] + ["c0", "c1", "c2"], ["c0", "c1", "c2"]

def timed(fn):
    t = time.perf_counter(); out = fn(); return time.perf_counter() - t, out

def cpu(fn):
    "Process CPU seconds of one call (with one LightGBM thread, robust to other load on the machine)."
    t = time.process_time(); fn(); return time.process_time() - t

def pairs(raw, ours, repeats):
    "One untimed warm-up each, then alternate the two `repeats` times; medians of wall and CPU seconds: (raw, ours, raw cpu, ours cpu)."
    raw(); ours()
    r, o, rc, oc = [], [], [], []
    for _ in range(repeats):
        w = time.perf_counter(); rc.append(cpu(raw)); r.append(time.perf_counter() - w)
        w = time.perf_counter(); oc.append(cpu(ours)); o.append(time.perf_counter() - w)
    return statistics.median(r), statistics.median(o), statistics.median(rc), statistics.median(oc)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000, help="rows generated; 70%% train (fit/cv), 15%% valid, 15%% explained/scored")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=200, help="boosting rounds for fit and cv (no early stopping)")
    ap.add_argument("--trials", type=int, default=10, help="tuning trials")
    ap.add_argument("--shap-rows", type=int, default=1000, help="rows explained (step 05's evaluate.shap_rows)")
    ap.add_argument("--threads", type=int, default=0, help="LightGBM threads (0: all cores, as train.num_threads)")
    ap.add_argument("--quick", action="store_true", help="20k rows, 3 repeats, 3 trials; no README update")
    args = ap.parse_args(argv)
    if args.quick: args.rows, args.repeats, args.trials = 20_000, 3, 3
    X, y, features, cats = make_data(args.rows)
    n_tr, n_va = int(0.7 * len(y)), int(0.15 * len(y))
    Xt, yt, Xv, yv, Xs = X[:n_tr], y[:n_tr], X[n_tr:n_tr + n_va], y[n_tr:n_tr + n_va], X[n_tr + n_va:][:args.shap_rows]
    params = lgb_params(TrainCfg(num_threads=args.threads), "binary", 2, seed=0)
    results = dict(rows_train=n_tr, rounds=args.rounds, repeats=args.repeats, threads=args.threads,
                   machine=f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}, lightgbm {lgb.__version__}")

    raw_fit = lambda: lgb.train(params, lgb.Dataset(Xt, yt, feature_name=features, categorical_feature=cats), args.rounds)
    our_fit = lambda: fit_lgbm(Xt, yt, params, features, cats, args.rounds, patience=None)
    results["fit"] = pairs(raw_fit, our_fit, args.repeats)
    print(f"fit: raw {results['fit'][0]:.3f}s, mlnb {results['fit'][1]:.3f}s", flush=True)

    splits = cv_splits(5, "stratified", 0, len(yt), y=yt)
    def raw_cv():
        res = lgb.cv(params, lgb.Dataset(Xt, yt, feature_name=features, categorical_feature=cats, free_raw_data=False), args.rounds,
                     folds=splits, return_cvbooster=True)
        return [b.predict(Xt[va]) for (_, va), b in zip(splits, res["cvbooster"].boosters)]
    our_cv = lambda: cross_validate(Xt, yt, params, splits, features, cats, "binary", args.rounds, patience=args.rounds)
    results["cv"] = pairs(raw_cv, our_cv, max(1, args.repeats // 2))
    print(f"cv: raw {results['cv'][0]:.3f}s, mlnb {results['cv'][1]:.3f}s", flush=True)

    booster = raw_fit()
    name, contrib = contributions_fn()
    if contrib:
        results["shap_fn"] = f"mlnb.evaluate.{name}"
        results["shap"] = pairs(lambda: booster.predict(Xs, pred_contrib=True), lambda: contrib(booster, Xs), args.repeats)
        print(f"shap ({len(Xs)} rows): raw {results['shap'][0]:.3f}s, mlnb {results['shap'][1]:.3f}s", flush=True)

    t, study = timed(lambda: tune(Xt, yt, Xv, yv, "binary", TrainCfg(num_threads=args.threads).model_dump(), features, cats, 2,
                                  n_trials=args.trials, storage=f"sqlite:///{tempfile.mkdtemp()}/study.db", name="bench", verbose=False))
    pruned = sum(tr.state.name == "PRUNED" for tr in study.trials)
    results["tune"] = dict(trials=len(study.trials), pruned=pruned, seconds=t, trials_per_minute=60 * len(study.trials) / t,
                           best_valid_auc=study.best_value)
    print(f"tune: {len(study.trials)} trials ({pruned} pruned) in {t:.1f}s", flush=True)

    ratio = lambda k: results[k][1] / results[k][0]
    cpu_ratio = lambda k: results[k][3] / results[k][2]
    def row(k, label, target, pct=True):
        show = (lambda r: f"{100 * (r - 1):+.1f}%") if pct else (lambda r: f"{r:.2f}x")
        return (f"| {label} | {results[k][0]:.3f} | {results[k][1]:.3f} | {show(ratio(k))} | {results[k][2]:.3f} | {results[k][3]:.3f} | "
                f"{show(cpu_ratio(k))} | {'≤ +5%' if pct else '≤ 1.1x'} {'✅' if ratio(k) <= target else '❌'} |")
    rows = [row("fit", f"`fit_lgbm` vs `lgb.train`, {args.rounds} rounds", 1.05),
            row("cv", "`cross_validate` vs `lgb.cv` + fold predictions, 5 folds", 1.05)]
    if "shap" in results: rows.append(row("shap", f"`{results['shap_fn']}` vs `pred_contrib=True`, {len(Xs):,} rows", 1.1, pct=False))
    tu = results["tune"]
    text = (f"Machine: {results['machine']}. Data: {n_tr:,} training rows x {X.shape[1]} features (3 categorical), "
            f"{args.threads or 'all'} LightGBM threads. Medians of {args.repeats} alternating repeats (cv: {max(1, args.repeats // 2)}).\n\n"
            "| measure | raw s | mlnb s | overhead | raw CPU s | mlnb CPU s | CPU overhead | target (wall) |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) +
            f"\n\nTuning (TPE, median pruning, SQLite study, early stopping on {n_va:,} valid rows): {tu['trials']} trials "
            f"({tu['pruned']} pruned) in {tu['seconds']:.1f} s = **{tu['trials_per_minute']:.1f} trials per minute**.\n")
    save_report("train", results, text, readme=not args.quick)

if __name__ == "__main__": sys.exit(main())
