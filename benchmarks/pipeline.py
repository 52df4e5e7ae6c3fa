"""Pipeline benchmark: what orchestration costs on top of the steps' own work, and what a cached re-run costs.

    python benchmarks/pipeline.py                 # default data (200k customers), 3 repeats
    python benchmarks/pipeline.py --rows 20000 --repeats 1

In one session, on the same data:
  raw     the eight step functions called one after another in a single Python process
          (no papermill, no kernels, no W&B): the baseline compute;
  cold    `mlnb run --force` as a user runs it (papermill, one kernel per step, W&B offline);
  cached  `mlnb run` again with nothing changed (every step but 07_deploy reused).
Overhead per step = (cold - raw) / 8; also reported per step from run.json (wall time minus the
time the kernel spent in cells). Medians over the repeats. The figures are written between the
markers in benchmarks/README.md.
"""
import argparse, json, os, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import yaml
from _report import save_report

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def sh(cmd, cwd, env):
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if res.returncode: sys.exit(f"benchmark command failed: {' '.join(map(str, cmd))}\n{res.stdout}\n{res.stderr}")
    return time.perf_counter() - t, res.stdout

RAW = """
import sys, time
from pathlib import Path
from mlnb.config import load_config
from mlnb.steps import STEPS
config, run_dir = sys.argv[1], Path(sys.argv[2])
run_dir.mkdir(parents=True)
t = time.perf_counter()
for s in STEPS: s.function()(config, str(run_dir))
print(time.perf_counter() - t)
"""

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=None, help="synthetic customers (default: mlnb.yaml's)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mlnb-bench-"))
    cfg = yaml.safe_load((ROOT/"mlnb.yaml").read_text())
    if args.rows: cfg["data"]["synthetic"]["rows"] = args.rows
    (work/"mlnb.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")} | {"WANDB_MODE": "offline", "MPLCONFIGDIR": str(work/".mpl")}
    gen, _ = sh([BIN/"mlnb", "run", "--steps", "00", "--run-id", "generate"], work, env)   # writes the sources once
    raw, cold, cached, per_step = [], [], [], {}
    for i in range(args.repeats):
        t, out = sh([sys.executable, "-c", RAW, str(work/"runs"/"generate"/"config.yaml"), str(work/"raw"/str(i))], work, env)
        raw.append(float(out.strip().splitlines()[-1]))
        t, _ = sh([BIN/"mlnb", "run", "--force", "--run-id", f"cold-{i}"], work, env); cold.append(t)
        rec = json.loads((work/"runs"/f"cold-{i}"/"run.json").read_text())
        for n, s in rec["steps"].items(): per_step.setdefault(n, []).append((s["duration_s"], s["overhead_s"], s["compute_s"]))
        t, _ = sh([BIN/"mlnb", "run", "--run-id", f"cached-{i}"], work, env); cached.append(t)
        print(f"repeat {i + 1}/{args.repeats}: raw {raw[-1]:.1f}s  cold {cold[-1]:.1f}s  cached {cached[-1]:.1f}s", flush=True)
    med = statistics.median
    n = len(per_step)
    res = dict(rows=cfg["data"]["synthetic"]["rows"], repeats=args.repeats, generate_s=gen, raw_s=med(raw), cold_s=med(cold), cached_s=med(cached),
               overhead_per_step_s=(med(cold) - med(raw)) / n, cached_ratio=med(cached) / med(cold),
               steps={k: dict(wall_s=med(v[0] for v in vs), overhead_s=med(v[1] for v in vs), compute_s=med(v[2] for v in vs)) for k, vs in per_step.items()},
               machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}")
    table = "\n".join(f"| {k} | {v['wall_s']:.2f} | {v['compute_s']:.2f} | {v['overhead_s']:.2f} |" for k, v in res["steps"].items())
    text = f"""Machine: {res['machine']}. Data: {res['rows']:,} synthetic customers. Medians of {args.repeats} repeats.

| measure | seconds | target |
|---|---|---|
| raw: the 8 step functions in one process | {res['raw_s']:.1f} | baseline |
| cold `mlnb run --force` | {res['cold_s']:.1f} | |
| orchestration overhead per step, (cold - raw) / 8 | {res['overhead_per_step_s']:.2f} | ≤ 1.5 {'✅' if res['overhead_per_step_s'] <= 1.5 else '❌'} |
| cached re-run `mlnb run` | {res['cached_s']:.1f} | |
| cached / cold | {res['cached_ratio']:.1%} | ≤ 10% {'✅' if res['cached_ratio'] <= 0.10 else '❌'} |

Per step in the cold run (from run.json): wall time, the step function's own compute, and overhead =
wall time minus the time the kernel spent in cells (kernel start, papermill, writing the notebook, digests).

| step | wall s | step compute s | overhead s |
|---|---|---|---|
{table}
"""
    save_report("pipeline", res, text)

if __name__ == "__main__":
    main()
