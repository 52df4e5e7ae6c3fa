"Step 01 (mlnb.validate): the data contract, each check on a small frame, and a run that a tightened contract fails."
import json, time
import numpy as np
import polars as pl
import pytest
import yaml
from conftest import write_config
from mlnb.config import DataCfg, ValidateCfg
from mlnb.core import MlnbError
from mlnb.validate import (CHECKS, check_contract, failures, infer_contract, load_contract, save_contract, single_feature_auc,
                           validate_snapshot)

DATA = DataCfg(target="churned", id_column="customer_id", time_column="signup_date", pii=[], synthetic=None)
RULES = ValidateCfg(min_rows=10, ranges={})

def reference(n: int = 400, seed: int = 0) -> pl.DataFrame:
    "A small churn-like snapshot: an id, a date, text categories, numbers with some nulls, a 0/1 target."
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "customer_id": np.arange(1, n + 1), "signup_date": np.datetime64("2024-01-01") + rng.integers(0, 365, n).astype("timedelta64[D]"),
        "plan": rng.choice(["basic", "standard", "premium"], n), "flag": rng.choice(["yes", "no", "007"], n),
        "age": np.where(rng.random(n) < 0.05, np.nan, rng.normal(40, 10, n).round()), "calls": rng.poisson(2, n),
        "charges": rng.normal(50, 5, n).round(2), "churned": (rng.random(n) < 0.2).astype(int),
    }).with_columns(pl.col("age").fill_nan(None), pl.col("signup_date").cast(pl.Date))

@pytest.fixture(scope="module")
def contract():
    return infer_contract(reference(), "churned", "customer_id")

def failed(report: pl.DataFrame, severity: str = "error") -> set:
    return {(r["check"], r["column"]) for r in failures(report, severity).iter_rows(named=True)}

# --- the contract -------------------------------------------------------------------------------

def test_inferred_contract(contract):
    cols = contract["columns"]
    assert contract["rows"] == {"min": 200, "max": 1600}
    assert cols["customer_id"] == {"type": "Int64", "nullable": False, "unique": True}
    assert cols["plan"] == {"type": "String", "nullable": False, "categories": ["basic", "premium", "standard"]}
    assert cols["churned"]["categories"] == [0, 1]
    assert cols["age"]["nullable"] and 0.05 < cols["age"]["max_null_fraction"] < 0.2
    ref = reference()
    assert cols["age"]["min"] < ref["age"].min() and cols["age"]["max"] > ref["age"].max()
    assert cols["calls"]["min"] == 0 and isinstance(cols["calls"]["max"], int)   # counts stay integers and never go below 0
    assert cols["signup_date"] == {"type": "Date", "nullable": False}
    assert not failed(validate_snapshot(ref, DATA, RULES, contract)), "the reference must pass its own contract"

def test_contract_round_trip(contract, tmp_path):
    path = save_contract(contract, tmp_path/"contract.yaml", source="a test")
    text = path.read_text()
    assert text.startswith("# mlnb data contract") and "a test" in text.splitlines()[0]
    assert load_contract(path) == contract
    assert list(yaml.safe_load(text)) == ["columns", "rows", "version"]
    assert list(yaml.safe_load(text)["columns"]) == sorted(contract["columns"])
    assert "categories: ['007', 'no', 'yes']" in text                  # strings YAML would read as numbers or booleans stay strings
    save_contract(load_contract(path), tmp_path/"again.yaml", source="a test")
    assert (tmp_path/"again.yaml").read_text() == text
    assert not list(tmp_path.glob(".*.tmp")), "writes are atomic: no temporary file left behind"

@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("  plan:\n", "  plan:\n    colour: red\n"), "column 'plan': unknown key 'colour' (line"),
    (lambda t: t.replace("  calls:\n    max:", "  calls:\n    max: lots\n    maxx:"), "column 'calls': unknown key 'maxx'"),
    (lambda t: t.replace("type: Int64\n    unique: true", "type: Int65\n    unique: true"), "column 'customer_id', key 'type'"),
    (lambda t: t.replace("columns:\n", "columns:\n  age: [\n"), "not valid YAML at line"),
    (lambda t: t.replace("version: 1", "version: 1\nowner: me"), "unknown key 'owner'"),
])
def test_load_contract_errors_name_file_column_and_key(contract, tmp_path, edit, message):
    path = save_contract(contract, tmp_path/"contract.yaml")
    changed = edit(path.read_text())
    assert changed != path.read_text(), "the edit must apply to this contract"
    path.write_text(changed)
    with pytest.raises(MlnbError) as e: load_contract(path)
    assert str(path) in str(e.value) and message in str(e.value), str(e.value)

def test_load_contract_errors_all_at_once(contract, tmp_path):
    path = save_contract(contract, tmp_path/"contract.yaml")
    path.write_text(path.read_text().replace("  plan:\n", "  plan:\n    colour: red\n").replace("  calls:\n    max: ", "  calls:\n    max: -"))
    with pytest.raises(MlnbError) as e: load_contract(path)
    assert "column 'plan': unknown key 'colour'" in str(e.value) and "column 'calls'" in str(e.value) and "is above max -" in str(e.value)

# --- each check catches its problem ---------------------------------------------------------------

def _dup_id(df): return df.with_columns(customer_id=pl.when(pl.col("customer_id") == 7).then(3).otherwise(pl.col("customer_id")))

CASES = {   # name: (corruption, (check, column) that must fail, severity)
    "missing column": (lambda df: df.drop("charges"), ("missing_column", "charges"), "error"),
    "retyped column": (lambda df: df.with_columns(pl.col("calls").cast(pl.String)), ("retyped_column", "calls"), "error"),
    "new column": (lambda df: df.with_columns(region=pl.lit("north")), ("new_column", "region"), "warning"),
    "out of range": (lambda df: df.with_columns(charges=pl.when(pl.col("customer_id") == 5).then(900.0).otherwise(pl.col("charges"))), ("in_range", "charges"), "error"),
    "unseen category": (lambda df: df.with_columns(plan=pl.when(pl.col("customer_id") == 9).then(pl.lit("gold")).otherwise(pl.col("plan"))), ("category", "plan"), "error"),
    "null in non-nullable": (lambda df: df.with_columns(calls=pl.when(pl.col("customer_id") == 11).then(None).otherwise(pl.col("calls"))), ("not_null", "calls"), "error"),
    "too many nulls": (lambda df: df.with_columns(age=pl.when(pl.col("customer_id") <= 200).then(None).otherwise(pl.col("age"))), ("null_fraction", "age"), "error"),
    "duplicate id": (_dup_id, ("unique", "customer_id"), "error"),
    "too few rows": (lambda df: df.head(150), ("row_count", ""), "error"),
    "one-class target": (lambda df: df.with_columns(churned=pl.lit(0, pl.Int64)), ("target_values", "churned"), "error"),
    "rare class": (lambda df: df.with_columns(churned=(pl.col("customer_id") == 1).cast(pl.Int64)), ("class_share", "churned"), "warning"),
    "leaking feature": (lambda df: df.with_columns(refund=pl.col("churned") * 30 + pl.col("calls")), ("leakage", "refund"), "error"),
    "outliers": (lambda df: df.with_columns(calls=pl.when(pl.col("customer_id") == 13).then(40).otherwise(pl.col("calls"))), ("outliers", "calls"), "warning"),
}

@pytest.mark.parametrize("case", list(CASES))
def test_each_check_catches_its_problem(contract, case):
    corrupt, expected, severity = CASES[case]
    report = validate_snapshot(corrupt(reference()), DATA, RULES, contract)
    assert expected in failed(report, severity), f"{case}: {failures(report, severity)}"
    if severity == "warning": assert expected not in failed(report), f"{case} must only warn"
    assert set(report["check"]) <= set(CHECKS) and report["severity"].is_in(["error", "warning"]).all()

def test_details_name_the_rows(contract):
    df = reference().with_columns(charges=pl.when(pl.col("customer_id").is_in([5, 8])).then(900.0).otherwise(pl.col("charges")),
                                  plan=pl.when(pl.col("customer_id") == 9).then(pl.lit("gold")).otherwise(pl.col("plan")))
    report = failures(validate_snapshot(df, DATA, RULES, contract))
    detail = dict(zip(report["check"], report["detail"]))
    assert detail["in_range"].startswith("2 values outside [") and "e.g. id 5 = 900.0, id 8 = 900.0" in detail["in_range"]
    assert detail["category"] == "1 value not among ['basic', 'premium', 'standard'] e.g. id 9 = gold"

def test_new_ids_are_not_out_of_range(contract):
    "Ids grow as customers arrive: the contract keeps them unique but gives them no range, and outliers ignore them."
    df = reference().with_columns(customer_id=pl.col("customer_id") + 10_000)   # new customers: larger ids
    report = validate_snapshot(df, DATA, RULES, contract)
    assert not failed(report), failures(report)

def test_severity_overrides(contract):
    df = CASES["out of range"][0](reference()).with_columns(region=pl.lit("north"))
    rules = RULES.model_copy(update={"severity": {"in_range": "warning", "new_column": "off", "outlier": "error"}})
    report = validate_snapshot(df, DATA, rules, contract)
    assert ("in_range", "charges") in failed(report, "warning") and not failed(report)
    assert "new_column" not in report["check"].to_list()
    assert "'outlier'" in failures(report, "warning").filter(pl.col("check") == "severity")["detail"].item()

def test_pandera_errors_never_escape(contract, monkeypatch):
    import pandera.polars as pa
    def boom(*a, **k): raise RuntimeError("backend exploded")
    monkeypatch.setattr(pa.DataFrameSchema, "validate", boom)
    rows = check_contract(reference(), contract, "customer_id")
    bad = [r for r in rows if not r["passed"]]
    assert [r["check"] for r in bad] == ["contract"] and "backend exploded" in bad[0]["detail"]

def test_types_pandera_does_not_know_are_still_checked(tmp_path):
    "Huge integers arrive as Int128, which pandera cannot express: the contract still checks range and type, and round-trips."
    df = pl.DataFrame({"id": range(1, 41), "x": [10**30 if i == 3 else i for i in range(1, 41)]}, schema_overrides={"x": pl.Int128})
    contract = infer_contract(df, None, "id")
    assert load_contract(save_contract(contract, tmp_path/"c.yaml")) == contract
    assert not [r for r in check_contract(df, contract, "id") if not r["passed"]]
    bigger = df.with_columns(x=pl.when(pl.col("id") == 5).then(10**32).otherwise(pl.col("x")).cast(pl.Int128))
    assert [(r["check"], r["column"]) for r in check_contract(bigger, contract, "id") if not r["passed"]] == [("in_range", "x")]
    assert [r["check"] for r in check_contract(df.with_columns(pl.col("x").cast(pl.Float64)), contract, "id") if not r["passed"]] == ["retyped_column"]

def test_leakage_heuristic_has_no_false_alarms_on_real_signal():
    "Strong but honest features (scikit-learn's breast cancer: best single-feature AUC 0.975) stay below 0.98."
    from sklearn import datasets
    b = datasets.load_breast_cancer()
    df = pl.DataFrame(b.data, schema=list(b.feature_names)).with_columns(target=pl.Series(b.target))
    aucs = single_feature_auc(df, "target", list(b.feature_names))
    assert 0.9 < aucs["auc"].max() < 0.98, aucs.head()
    w = datasets.load_wine()
    df = pl.DataFrame(w.data, schema=list(w.feature_names)).with_columns(target=pl.Series(w.target))
    assert single_feature_auc(df, "target", list(w.feature_names))["auc"].max() < 0.98

def test_default_snapshot_passes_fast():
    "The built-in churn data at full size: no false errors, and the checks take about a second."
    from mlnb.data import aggregate, generate_churn
    t = generate_churn(200_000, seed=0)
    events = aggregate(t["events"], "customer_id", {"n_events": "count", "minutes_used": "sum:minutes", "support_calls": "sum:is_support"})
    df = (t["customers"].drop("email", "phone").join(t["billing"], on="customer_id", how="left")
          .join(events, on="customer_id", how="left").with_columns(pl.col("signup_date").str.to_date(), pl.col("n_events", "minutes_used", "support_calls").fill_null(0)))
    contract = infer_contract(df, "churned", "customer_id")
    start = time.perf_counter()
    report = validate_snapshot(df, DataCfg(), ValidateCfg(), contract)
    seconds = time.perf_counter() - start
    assert failures(report).height == 0, failures(report)
    assert ("outliers", "monthly_charges") in failed(report, "warning")
    assert seconds < 4, f"validation took {seconds:.1f}s on 200k rows"

# --- end to end through the CLI ---------------------------------------------------------------------

def test_run_writes_contract_and_a_tightened_contract_fails_the_run(cli, tmp_path):
    write_config(tmp_path, tracking={"mode": "disabled"})
    res = cli("run", "--steps", "00-01", "--run-id", "ref", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    step = tmp_path/"runs"/"ref"/"01_validate"
    project_contract = tmp_path/"data"/"contracts"/"churn.yaml"   # the default: data/contracts/<model name>.yaml
    assert project_contract.is_file() and load_contract(step/"contract.yaml") == load_contract(project_contract)
    record = json.loads((step/"step.json").read_text())
    assert record["metrics"]["errors"] == 0 and record["summary"]["contract"].startswith("no data contract at")
    assert set(record["plots"]) == {"missing", "labels", "ranges"} and all((step/p).stat().st_size > 1000 for p in record["plots"].values())
    report = pl.read_csv(step/"tables"/"report.csv")
    assert report.filter(~pl.col("passed") & (pl.col("severity") == "error")).height == 0
    assert {"in_range", "category", "leakage", "outliers", "class_share"} <= set(report["check"])

    # a person tightens a range in the contract: the next validation fails, naming the column and the rows
    raw = yaml.safe_load(project_contract.read_text())
    raw["columns"]["monthly_charges"]["max"] = 100.0
    project_contract.write_text(yaml.safe_dump(raw))
    res = cli("run", "--steps", "01", "--force", "--run-id", "tight", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "01_validate" in res.stdout and "the snapshot breaks the data contract" in res.stdout
    assert "in_range on 'monthly_charges':" in res.stdout and "outside [0.0, 100.0] e.g. id " in res.stdout
    rec = json.loads((tmp_path/"runs"/"tight"/"run.json").read_text())
    assert rec["status"] == "failed" and rec["steps"]["01_validate"]["status"] == "failed"
    assert rec["steps"]["00_data"]["status"] == "reused"
    tight = pl.read_csv(tmp_path/"runs"/"tight"/"01_validate"/"tables"/"report.csv")
    assert tight.filter(~pl.col("passed") & (pl.col("severity") == "error"))["column"].to_list() == ["monthly_charges"]
    # the steps after validation validate first: no features, and so no model, from data that breaks its contract
    res = cli("run", "--steps", "02-03", "--run-id", "skipped", cwd=tmp_path)
    rec = json.loads((tmp_path/"runs"/"skipped"/"run.json").read_text())
    assert res.returncode == 1 and "the snapshot breaks the data contract" in res.stdout, res.stdout
    assert [rec["steps"][s]["status"] for s in ("00_data", "01_validate", "02_features", "03_train")] == ["reused", "failed", "pending", "pending"]
    assert res.stdout.startswith("run skipped: 3 step(s), 1 upstream from earlier runs -> "), res.stdout   # 01-03 run, 00 is reused

    # a broken contract file is a clear error too, not a traceback
    project_contract.write_text(project_contract.read_text().replace("monthly_charges:\n", "monthly_charges:\n    maximum: 5\n"))
    res = cli("run", "--steps", "01", "--force", "--run-id", "broken", cwd=tmp_path)
    assert res.returncode == 1
    assert "invalid data contract" in res.stdout and "column 'monthly_charges': unknown key 'maximum'" in res.stdout and str(project_contract) in res.stdout

    # a first snapshot that fails its checks does not become the reference
    project_contract.unlink()
    res = cli("run", "--steps", "01", "-p", "validate.min_rows=1000000", "--run-id", "small", cwd=tmp_path)
    assert res.returncode == 1 and "  - min_rows: 3,000 rows (minimum 1,000,000)" in res.stdout, res.stdout
    assert not project_contract.exists()
    assert "not written because the snapshot fails its checks" in json.loads((tmp_path/"runs"/"small"/"01_validate"/"step.json").read_text())["summary"]["contract"]
