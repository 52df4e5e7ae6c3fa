"""Monitoring (mlnb.monitor) and data protection (mlnb.security): drift measures against known values, bad inputs,
the demo monitor end to end (report, plots, W&B), encryption at rest, and the secret scan."""
import base64, json, os
from pathlib import Path
import numpy as np
import polars as pl
import pytest
import scipy.spatial, scipy.stats
from mlnb.config import MonitorCfg, load_config
from mlnb.core import MlnbError
from mlnb.monitor import (drift_gauges, drift_report, drift_table, js_distance, ks_statistic, live_performance, load_batch, load_labels,
                          load_reference, psi, reference_stats, retrain_decision, run_monitor, save_reference)
from mlnb.security import (MAGIC, data_key, is_encrypted, new_data_key, parse_data_key, read_encrypted, scan_for_secrets,
                           write_encrypted)

N = 20_000

def population(rows: int, seed: int, shift: float = 0.0) -> pl.DataFrame:
    "Two numeric columns, one text column and the model's probability; `shift` moves all four."
    rng = np.random.default_rng(seed)
    p = np.array([0.5, 0.3, 0.2]) if not shift else np.array([0.2, 0.3, 0.5])
    return pl.DataFrame({"age": rng.normal(40 + 10 * shift, 10, rows), "charges": rng.gamma(2, 20 * (1 + shift), rows),
                         "plan": rng.choice(["basic", "standard", "premium"], rows, p=p), "probability": rng.beta(2, 5 - 2 * shift, rows),
                         "request_id": [f"r{seed}-{i}" for i in range(rows)]})

@pytest.fixture(scope="module")
def reference():
    train = population(N, 0)
    return reference_stats(train, ["age", "charges", "plan"], ["plan"], predictions=train["probability"])

# --- drift measures -------------------------------------------------------------------------------------------

def test_no_drift_on_the_same_distribution(reference):
    t = drift_table(drift_report(reference, population(N, 1)))
    assert t["status"].to_list() == ["ok"] * 4, t
    assert t["psi"].max() < 0.01 and t["ks"].drop_nulls().max() < 0.03 and t["js"].drop_nulls().max() < 0.02

def test_drift_on_shifted_data(reference):
    report = drift_report(reference, population(N, 1, shift=1.0))
    t = drift_table(report)
    assert t["status"].to_list() == ["drift"] * 4, t
    assert t.filter(pl.col("column") == "plan")["js"][0] > 0.2
    assert set(drift_gauges(report)) == {"age", "charges", "plan", "probability"} and min(drift_gauges(report).values()) > 0.25
    decision = retrain_decision(report, MonitorCfg(), model_age_days=1)
    assert decision["retrain"] and decision["drifted"] == ["age", "charges", "plan", "probability"]

def test_psi_known_value():
    train = pl.DataFrame({"x": np.repeat(np.arange(100.0), 10)})       # deciles: 10 bins of 10% each
    ref = reference_stats(train, ["x"])
    assert ref["columns"]["x"]["shares"] == pytest.approx([0.1] * 10)
    half = pl.DataFrame({"x": np.repeat(np.arange(50.0), 10)})         # everything in the lower five bins
    expected = 5 * 0.1 * np.log(2) + 5 * (1e-4 - 0.1) * np.log(1e-4 / 0.1)
    assert drift_table(drift_report(ref, half))["psi"][0] == pytest.approx(expected, rel=1e-12)
    assert psi([0.25, 0.75], [0.5, 0.5]) == pytest.approx(0.25 * np.log(2) - 0.25 * np.log(2 / 3), rel=1e-12)

@pytest.mark.parametrize("seed,loc,scale", [(1, 0.0, 1.0), (2, 0.2, 1.0), (3, 0.0, 1.5), (4, 1.0, 0.5)])
def test_ks_matches_scipy(seed, loc, scale):
    rng = np.random.default_rng(seed)
    full = rng.normal(0, 1, 50_000)
    ref = reference_stats(pl.DataFrame({"x": full}), ["x"])["columns"]["x"]
    cur = rng.normal(loc, scale, 30_000)
    exact = scipy.stats.ks_2samp(ref["sketch"], cur).statistic
    assert ks_statistic(ref["sketch"], np.sort(cur)) == pytest.approx(exact, abs=1e-12)        # exact for the sketch
    assert abs(ks_statistic(ref["sketch"], np.sort(cur)) - scipy.stats.ks_2samp(full, cur).statistic) < 0.01  # the whole sample

def test_ks_with_ties_and_js_match_scipy():
    rng = np.random.default_rng(5)
    ref = reference_stats(pl.DataFrame({"n": rng.poisson(1.0, 10_000)}), ["n"])["columns"]["n"]
    cur = rng.poisson(1.4, 8_000).astype(float)
    assert ks_statistic(ref["sketch"], np.sort(cur)) == pytest.approx(scipy.stats.ks_2samp(ref["sketch"], cur).statistic, abs=1e-12)
    for p, q in (([0.5, 0.3, 0.2, 0.0], [0.2, 0.3, 0.4, 0.1]), ([1, 2, 3], [3, 2, 1])):
        assert js_distance(p, q) == pytest.approx(scipy.spatial.distance.jensenshannon(p, q, base=2), abs=1e-9)

def test_data_quality(reference):
    batch = population(2_000, 7).with_columns(
        pl.when(pl.int_range(pl.len()) % 5 == 0).then(None).otherwise(pl.col("age")).alias("age"),
        pl.when(pl.int_range(pl.len()) % 10 == 0).then(1e6).otherwise(pl.col("charges")).alias("charges"),
        pl.when(pl.int_range(pl.len()) % 20 == 0).then(pl.lit("gold")).otherwise(pl.col("plan")).alias("plan"))
    report = drift_report(reference, batch)
    q = dict(drift_table(report).select("column", "quality").iter_rows())
    assert q["age"].startswith("missing rate up 0.2") and q["charges"].startswith("out of range 0.1") and q["plan"].startswith("unseen categories up 0.05")
    assert report["new_values"] == {"plan": ["gold"]}
    assert any("data quality, age" in n for n in retrain_decision(report, MonitorCfg(), 1)["notes"])

def test_thresholds_come_from_the_config(tmp_path, reference):
    (tmp_path/"mlnb.yaml").write_text("monitor:\n  psi_alert: 50\n  psi_warn: 40\n  ks_alert: 1\n  js_alert: 1\n  max_model_age_days: 30\n")
    cfg = load_config(tmp_path/"mlnb.yaml").monitor
    report = drift_report(reference, population(N, 1, shift=1.0), cfg)
    assert set(drift_table(report)["status"]) == {"ok"}
    decision = retrain_decision(report, cfg, model_age_days=45)
    assert decision["retrain"] and decision["reasons"] == ["the model is 45 days old (monitor.max_model_age_days 30)"]
    (tmp_path/"bad.yaml").write_text("monitor:\n  psi_warn: 0.5\n  psi_alert: 0.2\n")
    with pytest.raises(MlnbError, match="psi_warn must not exceed"): load_config(tmp_path/"bad.yaml")

def test_live_performance_drop_triggers_retraining(reference):
    rng = np.random.default_rng(8)
    log = population(4_000, 9)
    labels = log.select("request_id", pl.Series("label", (rng.random(4_000) < 0.3).astype(int)))   # labels unrelated to the scores
    perf = live_performance(log, labels, "binary", [0, 1], window=1_000, reference={"roc_auc": 0.85})
    assert perf["labelled"] == 4_000 and len(perf["windows"]) == 4 and 0.4 < perf["value"] < 0.6
    decision = retrain_decision(drift_report(reference, log), MonitorCfg(), 1, perf)
    assert decision["retrain"] and decision["reasons"][0].startswith("live roc_auc")

# --- bad input ------------------------------------------------------------------------------------------------

def test_empty_prediction_log(tmp_path, reference):
    (tmp_path/"log").mkdir()
    with pytest.raises(MlnbError, match="no data found"): load_batch(tmp_path/"log")
    population(10, 1).head(0).write_parquet(tmp_path/"log"/"part-0001.parquet")
    with pytest.raises(MlnbError, match=r"log: no rows in 1 file\(s\)"): load_batch(tmp_path/"log")
    with pytest.raises(MlnbError, match="the batch has no rows"): drift_report(reference, population(10, 1).head(0), where="log")

def test_batch_missing_monitored_columns(tmp_path, reference):
    population(100, 1).drop("plan", "charges").write_csv(tmp_path/"batch.csv")
    batch = load_batch(tmp_path/"batch.csv")
    with pytest.raises(MlnbError, match=r"batch.csv: the batch lacks monitored columns: charges, plan"):
        drift_report(reference, batch, where=str(tmp_path/"batch.csv"))
    population(100, 1).with_columns(pl.lit("n/a").alias("age")).write_csv(tmp_path/"text.csv")
    with pytest.raises(MlnbError, match="column 'age' should be numeric"): drift_report(reference, load_batch(tmp_path/"text.csv"))

def test_labels_that_join_to_nothing(tmp_path):
    log = population(100, 1)
    pl.DataFrame({"request_id": ["x1", "x2"], "label": [0, 1]}).write_csv(tmp_path/"labels.csv")
    with pytest.raises(MlnbError, match=r"labels.csv: none of the 2 labels matches a request in the prediction log \(100 rows\)"):
        live_performance(log, load_labels(tmp_path/"labels.csv"), "binary", [0, 1], where=str(tmp_path/"labels.csv"))
    pl.DataFrame({"id": ["r1-0"], "y": [1]}).write_csv(tmp_path/"nolabel.csv")
    with pytest.raises(MlnbError, match="needs columns request_id and label"): load_labels(tmp_path/"nolabel.csv")
    with pytest.raises(MlnbError, match="no request_id column"):
        live_performance(log.drop("request_id"), load_labels(tmp_path/"labels.csv"), "binary")

def test_corrupt_reference_file(tmp_path, reference):
    path = save_reference(reference, tmp_path/"reference.json")
    assert path.stat().st_size < 50_000
    (tmp_path/"cut.json").write_text(path.read_text()[:1000])
    with pytest.raises(MlnbError, match=r"cut.json: not valid JSON"): load_reference(tmp_path/"cut.json")
    (tmp_path/"other.json").write_text(json.dumps({"columns": []}))
    with pytest.raises(MlnbError, match=r"other.json: not mlnb reference statistics"): load_reference(tmp_path/"other.json")
    broken = json.loads(path.read_text()); broken["columns"]["charges"]["shares"] = [1.0]
    (tmp_path/"broken.json").write_text(json.dumps(broken))
    with pytest.raises(MlnbError, match=r"broken.json: reference statistics are corrupt for column 'charges'"): load_reference(tmp_path/"broken.json")

def test_reference_is_small_for_50_features():
    rng = np.random.default_rng(0)
    df = pl.DataFrame({**{f"x{i}": rng.normal(0, 1, 20_000) for i in range(40)},
                       **{f"c{i}": rng.choice([f"v{j}" for j in range(60)], 20_000) for i in range(10)}})
    ref = reference_stats(df, df.columns, [c for c in df.columns if c.startswith("c")], predictions=pl.Series("probability", rng.random(5_000)))
    assert len(json.dumps(ref, separators=(",", ":"))) < 1_000_000

# --- the monitor end to end -----------------------------------------------------------------------------------

def test_demo_monitor_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rec = run_monitor()
    s = rec["summary"]
    assert s["retrain"] is True and s["version"] == "v1"
    assert {"plan", "age", "monthly_charges"} <= set(s["drifted"]) and "tenure_days" not in s["drifted"]
    assert any(r.startswith("drift in") for r in s["reasons"])
    assert 0.5 < rec["metrics"]["live_roc_auc"] < 1, "live performance is measured on the labelled log (its drop is tested above)"
    assert set(rec["plots"]) == {"psi", "distributions", "prediction"} and set(rec["tables"]) == {"drift", "performance"}
    assert rec["metrics"]["psi_monthly_charges"] > 0.25 and rec["metrics"]["psi_tenure_days"] < 0.1

def test_monitor_run_is_logged_to_wandb(tmp_path):
    "The monitor's folder mirrors to W&B like a pipeline step's (offline): metrics, plots and tables land in the .wandb file."
    from mlnb.monitor import demo_monitor
    from mlnb.tracking import Mirror, read_wandb_log, wandb_logs
    config, run_dir = demo_monitor(tmp_path)
    run_monitor(str(config), str(run_dir))
    (run_dir/"run.json").write_text(json.dumps(dict(run_id=run_dir.name, config={})))   # what the CLI writes for a monitor run
    mirror = Mirror(run_dir, "offline")
    mirror.submit("08_monitor", "monitor0001")
    assert mirror.close()["08_monitor"]["status"] == "logged"
    logged = read_wandb_log(next(iter(wandb_logs(run_dir).values())))
    text = json.dumps(logged, default=str)
    assert "psi_monthly_charges" in text and "plots/psi" in text and "tables/drift" in text

def test_encrypted_prediction_log_is_monitored(tmp_path, reference, monkeypatch):
    key = new_data_key()
    monkeypatch.setenv("MLNB_DATA_KEY", key)
    (tmp_path/"log").mkdir()
    population(3_000, 1, shift=1.0).write_parquet(tmp_path/"plain.parquet")
    write_encrypted(tmp_path/"log"/"part-0001.parquet.enc", (tmp_path/"plain.parquet").read_bytes())
    assert is_encrypted(tmp_path/"log"/"part-0001.parquet.enc")
    assert set(drift_table(drift_report(reference, load_batch(tmp_path/"log")))["status"]) == {"drift"}
    monkeypatch.setenv("MLNB_DATA_KEY", new_data_key())
    with pytest.raises(MlnbError, match="part-0001.parquet.enc: could not decrypt"): load_batch(tmp_path/"log")

# --- data protection ------------------------------------------------------------------------------------------

def test_encryption_round_trip_and_tamper_detection(tmp_path, monkeypatch):
    key = new_data_key()
    monkeypatch.setenv("MLNB_DATA_KEY", key)
    data = os.urandom(100_000) + b"customer@example.com"
    write_encrypted(tmp_path/"snap.bin", data)
    raw = (tmp_path/"snap.bin").read_bytes()
    assert raw.startswith(MAGIC) and b"customer@example.com" not in raw and not list(tmp_path.glob(".*tmp"))
    assert read_encrypted(tmp_path/"snap.bin") == data
    assert read_encrypted(tmp_path/"snap.bin", parse_data_key(bytes.fromhex(base64.b64decode(key).hex()).hex())) == data   # hex form of the key
    for pos in (len(MAGIC), len(MAGIC) + 12, len(raw) // 2, len(raw) - 1):     # nonce, ciphertext, tag
        bad = bytearray(raw); bad[pos] ^= 0x01
        (tmp_path/"bad.bin").write_bytes(bytes(bad))
        with pytest.raises(MlnbError, match="bad.bin: could not decrypt: the file was altered"): read_encrypted(tmp_path/"bad.bin")
    (tmp_path/"plain.bin").write_bytes(b"plain")
    assert read_encrypted(tmp_path/"plain.bin") == b"plain"
    with pytest.raises(MlnbError, match="not encrypted"): read_encrypted(tmp_path/"plain.bin", plain=False)

def test_bad_or_missing_data_key(tmp_path, monkeypatch):
    monkeypatch.setenv("MLNB_DATA_KEY", "secret-but-not-a-key-0123456789")
    with pytest.raises(MlnbError, match=r"\$MLNB_DATA_KEY: the data key is not 32 bytes") as e: data_key()
    assert "secret-but-not-a-key" not in str(e.value)
    monkeypatch.delenv("MLNB_DATA_KEY")
    with pytest.raises(MlnbError, match="needs a data key"): write_encrypted(tmp_path/"x.enc", b"data")
    (tmp_path/"key").write_text(new_data_key() + "\n")
    assert len(data_key(file=tmp_path/"key")) == 32

def test_scan_finds_planted_secrets(tmp_path):
    secret, email = "sk-test-" + os.urandom(8).hex(), "user2500@example.com"
    run = tmp_path/"runs"/"r1"
    (run/"wandb"/"offline-run-1").mkdir(parents=True)
    (run/"03_train").mkdir()
    (run/"03_train"/"03_train.ipynb").write_text(json.dumps({"cells": [{"outputs": [{"text": f"token={secret}\n"}]}]}))
    (run/"wandb"/"offline-run-1"/"run-1.wandb").write_bytes(b":W&B\xe1\xbe\x00" + os.urandom(64) + secret.encode() + os.urandom(64))
    (run/"service.log").write_text("GET /health 200\n")
    pl.DataFrame({"email": [f"user{i}@example.com" for i in range(5_000)]}).write_parquet(run/"snapshot.parquet", compression="zstd")
    assert email.encode() not in (run/"snapshot.parquet").read_bytes()
    hits = scan_for_secrets(tmp_path, [secret, email, "never-written-anywhere"])
    assert sorted((Path(f).name, h) for f, h in hits) == sorted([("03_train.ipynb", f"sk… ({len(secret)} chars)"), ("run-1.wandb", f"sk… ({len(secret)} chars)"),
                                                                ("snapshot.parquet", f"us… ({len(email)} chars)")])
    assert all(secret not in h and email not in h for _, h in hits)
    (run/"03_train"/"03_train.ipynb").unlink(); (run/"wandb"/"offline-run-1"/"run-1.wandb").unlink(); (run/"snapshot.parquet").unlink()
    assert scan_for_secrets(tmp_path, [secret, email]) == []

def test_the_services_prediction_log_is_monitored(tmp_path, reference):
    "Rows written by the service's own PredictionLog (model/date folders, time, model, version, request_id, outputs) are read as they are."
    from mlnb.serve import PredictionLog
    batch = population(600, 3, shift=1.0)
    log = PredictionLog(tmp_path/"predictions", {"age": pl.Float64, "charges": pl.Float64, "plan": pl.String}, batch_rows=200, seconds=0.1)
    for i in range(0, 600, 50):
        part = batch.slice(i, 50)
        log.add("churn", "v1", f"req{i}", part.select("age", "charges", "plan").to_dicts(),
                dict(prediction=[int(p >= 0.5) for p in part["probability"]], probability=part["probability"].to_list()))
    log.close()
    rows = load_batch(tmp_path/"predictions")
    assert rows.height == 600 and {"request_id", "version", "time", "probability"} <= set(rows.columns)
    t = drift_table(drift_report(reference, rows, version="v1"))
    assert t["status"].to_list() == ["drift"] * 4, t
    assert drift_report(reference, rows, version="v2")["prediction_rows"] == 0          # another version's outputs are not compared

def test_encrypted_snapshot_hides_pii_from_the_scan(tmp_path, monkeypatch):
    from mlnb.security import load_frame, save_frame
    monkeypatch.setenv("MLNB_DATA_KEY", new_data_key())
    df = pl.DataFrame({"customer_id": range(3_000), "email": [f"user{i}@example.com" for i in range(3_000)]})
    save_frame(df, tmp_path/"enc"/"snapshot.parquet", encrypt=True)
    save_frame(df, tmp_path/"plain"/"snapshot.parquet")
    assert load_frame(tmp_path/"enc"/"snapshot.parquet").equals(df) and load_frame(tmp_path/"plain"/"snapshot.parquet").equals(df)
    assert scan_for_secrets(tmp_path/"enc", ["user1234@example.com"]) == []
    assert [Path(f).parent.name for f, _ in scan_for_secrets(tmp_path, ["user1234@example.com"])] == ["plain"]

def test_monitor_defaults_to_the_service_log_and_needs_a_reference(tmp_path):
    import yaml
    from mlnb.monitor import demo_monitor
    config, run_dir = demo_monitor(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["monitor"]["batch"], raw["monitor"]["labels"], raw["serve"]["log_dir"] = None, None, "log"
    config.write_text(yaml.safe_dump(raw))
    rec = run_monitor(str(config), str(run_dir))
    assert Path(rec["params"]["batch"]) == tmp_path/"log" and rec["summary"]["retrain"] and "performance" not in rec["tables"]
    version = Path(raw["package"]["registry"])/"churn"/rec["summary"]["version"]
    (version/"reference.json").write_text((version/"reference.json").read_text().replace('"format":1', '"format":1 '))
    with pytest.raises(MlnbError, match="reference.json: sha256 differs"): run_monitor(str(config), str(run_dir))   # tampered
    (version/"reference.json").unlink()                    # a version packaged before monitoring existed
    sums = json.loads((version/"checksums.json").read_text()); del sums["reference.json"]
    (version/"checksums.json").write_text(json.dumps(sums))
    with pytest.raises(MlnbError, match=r"churn@production \(v1\) has no reference.json"): run_monitor(str(config), str(run_dir))

def test_nothing_to_monitor_yet_is_said_before_any_run(cli, tmp_path, monkeypatch):
    "Right after the first pipeline run there is a model but no prediction log: `mlnb monitor` and `mlnb retrain` say what to do, and start no run."
    import yaml
    import mlnb.runner
    from mlnb.monitor import demo_monitor, retrain
    config, _ = demo_monitor(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["monitor"]["batch"], raw["monitor"]["labels"], raw["serve"]["log_dir"] = None, None, "predictions"
    config.write_text(yaml.safe_dump(raw))
    for command in ("monitor", "retrain"):
        res = cli(command, "-c", config, cwd=tmp_path)
        assert res.returncode == 2, res.stdout + res.stderr
        assert "predictions: the prediction log holds no requests yet, so there is nothing to monitor" in res.stderr, res.stderr
        assert "mlnb serve churn@production" in res.stderr and "-p monitor.batch=" in res.stderr and "Traceback" not in res.stderr
    res = cli("monitor", "-c", config, "-p", "monitor.batch=typo.csv", cwd=tmp_path)   # a batch that names no file
    assert res.returncode == 2 and "typo.csv: monitor.batch names no data file" in res.stderr, res.stderr
    assert not (tmp_path/"runs").exists() or not any((tmp_path/"runs").iterdir()), "no run folder for nothing to monitor"
    (tmp_path/"registry"/"churn"/"aliases.json").write_text("{}")          # no production model at all
    res = cli("monitor", "-c", config, cwd=tmp_path)
    assert res.returncode == 2 and "model 'churn' has no 'production' alias yet" in res.stderr and "Traceback" not in res.stderr, res.stderr
    (tmp_path/"registry"/"churn"/"aliases.json").write_text('{"production": "v1"}')
    calls, said = [], []                                  # --force retrains anyway: straight to steps 00-06, no monitoring run
    def fake_run(config_path, overrides=(), steps=None, run_id=None, echo=None, **kw):
        calls.append(steps); raise RuntimeError("stop after the first run")
    monkeypatch.setattr(mlnb.runner, "run_pipeline", fake_run)
    with pytest.raises(RuntimeError, match="stop after the first run"): retrain(config, force=True, echo=said.append)
    assert calls == ["00-06"] and said == ["not monitoring (the prediction log holds no requests yet, so there is nothing to monitor); retraining anyway (--force)"]
