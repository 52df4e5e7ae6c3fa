"Step 02 in depth: split strategies and the manifest, preprocessing round trips, feature selection, class imbalance, end to end."
import datetime as dt, json, shutil
from pathlib import Path
import numpy as np
import polars as pl
import pytest
from conftest import write_config
import mlnb.features as features
from mlnb.core import MlnbError, load_json
from mlnb.features import (RARE, Preprocessor, check_manifest, class_balance, downsample, feature_version, select_features,
                           split_frame, split_manifest)

N = 2000

@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame({"id": range(N), "y": (rng.random(N) < 0.1).astype(int),
                         "day": [dt.date(2024, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 120, N)],
                         "shop": rng.integers(0, 1000, N), "x": rng.normal(size=N)})

def sizes(s: pl.DataFrame) -> dict:
    return dict(s.group_by("split").len().iter_rows())

# ---------------------------------------------------------------- splits

@pytest.mark.parametrize("how", ["random", "stratified", "time", "group"])
def test_every_split_is_deterministic_complete_and_disjoint(frame, how):
    kw = dict(target="y", time_column="day", group_column="shop")
    s = split_frame(frame, how, 0.15, 0.2, seed=3, **kw)
    assert s.height == N and set(s["split"]) == {"train", "valid", "test"}
    assert split_frame(frame, how, 0.15, 0.2, seed=3, **kw).equals(s)
    m = check_manifest(split_manifest(s, how, "id", "day" if how == "time" else None))
    ids = {k: set(v) for k, v in m["ids"].items()}
    assert not (ids["train"] & ids["valid"] or ids["train"] & ids["test"] or ids["valid"] & ids["test"])
    assert sum(map(len, ids.values())) == N
    n = sizes(s)
    tol = 0.06 if how in ("time", "group") else 0.002      # ties (time) and whole groups make sizes approximate
    assert abs(n["test"] / N - 0.2) < tol and abs(n["valid"] / N - 0.15) < tol, n

def test_split_column_is_an_enum_that_compares_with_text(frame):
    s = split_frame(frame, "random", 0.15, 0.2, seed=1)
    assert s.schema["split"] == features.SPLIT and s.filter(pl.col("split") == "valid").height == 300
    assert s.group_by("split").len().sort("split")["split"].to_list() == ["test", "train", "valid"]   # sorts like text

def test_random_and_stratified_sizes_are_exact_and_seeded(frame):
    r = split_frame(frame, "random", 0.15, 0.2, seed=1)
    assert sizes(r) == {"train": 1300, "valid": 300, "test": 400}
    assert not split_frame(frame, "random", 0.15, 0.2, seed=2).equals(r)
    s = split_frame(frame, "stratified", 0.15, 0.2, seed=1, target="y")
    share = s.group_by("split").agg(pl.col("y").mean()).sort("split")["y"].to_list()
    assert max(share) - min(share) < 0.005, share

def test_time_split_puts_test_strictly_after_train_and_keeps_ties_together(frame):
    s = split_frame(frame, "time", 0.15, 0.2, seed=0, time_column="day")
    t = {r["split"]: (r["first"], r["last"]) for r in s.group_by("split").agg(pl.col("day").min().alias("first"), pl.col("day").max().alias("last")).iter_rows(named=True)}
    assert t["train"][1] < t["valid"][0] and t["valid"][1] < t["test"][0]
    assert s.group_by("day").agg(pl.col("split").n_unique())["split"].max() == 1
    # the seed does not matter for a time split; the order of the rows does not either
    assert split_frame(frame.reverse(), "time", 0.15, 0.2, seed=9, time_column="day").sort("id").equals(s)
    m = split_manifest(s, "time", "id", "day")
    assert m["time"]["test"][0] == t["test"][0]
    bad = {**m, "time": {**m["time"], "train": [t["train"][0], t["test"][0]]}}
    with pytest.raises(MlnbError, match="not ordered"): check_manifest(bad)

def test_group_split_keeps_each_group_in_one_split(frame):
    s = split_frame(frame, "group", 0.15, 0.2, seed=0, group_column="shop")
    assert s.group_by("shop").agg(pl.col("split").n_unique())["split"].max() == 1
    other = split_frame(frame, "group", 0.15, 0.2, seed=1, group_column="shop")
    assert not other.equals(s)                                # the seed moves groups
    assert other.group_by("shop").agg(pl.col("split").n_unique())["split"].max() == 1

def test_split_errors_name_the_problem(frame):
    with pytest.raises(MlnbError, match="unknown split 'weekly'"): split_frame(frame, "weekly", 0.15, 0.2, 0)
    with pytest.raises(MlnbError, match="needs a time_column"): split_frame(frame, "time", 0.15, 0.2, 0)
    with pytest.raises(MlnbError, match="needs a group_column.*'store'"): split_frame(frame, "group", 0.15, 0.2, 0, group_column="store")
    gaps = frame.with_columns(pl.when(pl.col("id") < 3).then(None).otherwise(pl.col("day")).alias("day"))
    with pytest.raises(MlnbError, match="'day' has 3 missing values"): split_frame(gaps, "time", 0.15, 0.2, 0, time_column="day")

def test_manifest_detects_overlap_empty_splits_and_duplicate_rows(frame):
    s = split_frame(frame, "random", 0.15, 0.2, seed=0)
    dup = s.with_columns(pl.when(pl.col("id") == pl.col("id").filter(pl.col("split") == "test").first())
                         .then(pl.col("id").filter(pl.col("split") == "train").first()).otherwise(pl.col("id")).alias("id"))
    with pytest.raises(MlnbError, match="the split overlaps: 1 id value"): check_manifest(split_manifest(dup, "random", "id"))
    hashed = split_manifest(s.drop("id"), "random")               # no id column: row hashes
    assert hashed["key"] == "row hash" and sum(map(len, hashed["ids"].values())) == N
    check_manifest(hashed)
    twin = pl.concat([s.drop("id").filter(pl.col("split") == "train").head(1).with_columns(split=pl.lit("test", features.SPLIT)), s.drop("id")])
    with pytest.raises(MlnbError, match="row hash"): check_manifest(split_manifest(twin, "random"))
    with pytest.raises(MlnbError, match="the valid split is empty"):
        check_manifest(split_manifest(s.filter(pl.col("split") != "valid"), "random", "id"))

# ---------------------------------------------------------------- preprocessing

@pytest.fixture(scope="module")
def train() -> pl.DataFrame:
    rng = np.random.default_rng(1)
    n = 500
    plans = rng.choice(["basic", "pro", "team"], n).tolist()
    plans[:3] = ["legacy", "legacy", "promo"]                      # rare in train
    return pl.DataFrame({"id": range(n), "plan": plans, "age": rng.normal(40, 10, n).round(), "spend": rng.lognormal(3, 1, n),
                         "flat": [1.0] * n, "spend_copy": None, "sparse": [None] * (n - 5) + [1.0] * 5,
                         "y": (rng.random(n) < 0.2).astype(int)}).with_columns(pl.col("spend").alias("spend_copy"))

SETTINGS = [dict(), dict(impute=True), dict(scale=True), dict(impute=True, scale=True, clip_quantiles=None, rare_min_count=1)]

@pytest.mark.parametrize("settings", SETTINGS)
def test_round_trip_transforms_identically(train, settings):
    pre = Preprocessor("y", {"log_spend": "LN(1 + spend)"}, ["id"], **settings).fit(train)
    again = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert again.to_dict() == pre.to_dict()
    served = pl.DataFrame({"id": [1, 2, 3, 4], "plan": ["never_seen", "legacy", "pro", None], "age": [500.0, -3.0, None, 40.0],
                           "spend": [1e12, float("inf"), 0.0, None], "y": [None] * 4})
    for rows in (train, served):
        a, b = pre.transform(rows), again.transform(rows)
        assert a.columns == pre.features_ and a.equals(b)
    if settings.get("impute"): assert pre.transform(served).null_count().sum_horizontal().item() == 0

@pytest.mark.parametrize("settings", SETTINGS)
def test_fit_on_rows_is_fit_on_those_rows(train, settings):
    split = train.with_columns(split=pl.when(pl.col("id") % 4 == 0).then(pl.lit("test", features.SPLIT)).otherwise(pl.lit("train", features.SPLIT)))
    fit = lambda *a: Preprocessor("y", {"log_spend": "LN(1 + spend)"}, ["id", "split"], sample_rows=200, **settings).fit(*a)
    a, b = fit(split, pl.col("split") == "train"), fit(split.filter(pl.col("split") == "train"))
    assert a.to_dict() == b.to_dict() and a.transform(split).equals(b.transform(split))
    assert fit(split.lazy().filter(pl.col("split") == "train")).to_dict() == a.to_dict()     # a LazyFrame fits the same

def test_order_statistics_come_from_a_seeded_sample(train):
    exact = Preprocessor("y", exclude=["id"], sample_rows=None).fit(train)
    assert Preprocessor("y", exclude=["id"], sample_rows=10_000).fit(train).to_dict()["clip"] == exact.clip_   # small data: every row
    small = Preprocessor("y", exclude=["id"], sample_rows=100, clip_quantiles=(0.0, 1.0)).fit(train)
    assert small.to_dict() == Preprocessor("y", exclude=["id"], sample_rows=100, clip_quantiles=(0.0, 1.0)).fit(train).to_dict()
    rows = features.sample_positions(train.height, 100)
    assert small.clip_["spend"] == [train["spend"][rows].min(), train["spend"][rows].max()] != exact.clip_["spend"]
    assert small.medians_["age"] == train["age"][rows].median()
    assert small.dropped_ == exact.dropped_                      # selection always sees every training row
    assert Preprocessor.from_dict(small.to_dict()).sample_rows == 100

def test_constant_means_one_value_counting_missing_as_one():
    nan = float("nan")
    X = pl.DataFrame({"nan_or_1": [1.0, nan, 1.0], "all_nan": [nan] * 3, "nulls": [None, None, None], "mixed": [None, nan, None],
                      "inf": [float("inf")] * 3, "two": [1.0, 2.0, 1.0]}, schema={c: pl.Float64 for c in ["nan_or_1", "all_nan", "nulls", "mixed", "inf", "two"]})
    assert select_features(X, 1.0) == {"all_nan": "constant", "nulls": "constant", "mixed": "constant", "inf": "constant"}

def test_decimal_literals_in_definitions_are_floating_point():
    assert features.float_literals("a * 30.0 / (1 + b) - .25 + 1e-3 + c1.5 + 'x 2.5'") == "a * 30.0e0 / (1 + b) - .25e0 + 1e-3 + c1.5 + 'x 2.5'"
    df = pl.DataFrame({"a": [1, 3], "b": [2, 5]})
    out = df.select(features.derived_exprs({"r": "a * 30.0 / (1 + b)"})["r"])
    assert out.dtypes == [pl.Float64] and out["r"].to_list() == [10.0, 15.0]
    assert out["r"].equals((df["a"] * 30.0 / (1 + df["b"])).alias("r"))

def test_clip_and_rare_rules_at_serving_time(train):
    pre = Preprocessor("y", exclude=["id"], rare_min_count=5).fit(train)
    assert pre.categories_["plan"][-1] == RARE and "legacy" not in pre.categories_["plan"]
    rare = pre.categories_["plan"].index(RARE)
    served = pl.DataFrame({"plan": ["never_seen", "legacy", "pro", None], "age": [500.0, -3.0, None, 40.0], "spend": [1e12, 1.0, 2.0, 3.0]})
    X = pre.transform(served)
    assert X["plan"].to_list() == [rare, rare, pre.categories_["plan"].index("pro"), None]
    lo, hi = pre.clip_["age"]
    assert X["age"].to_list() == [hi, lo, None, 40.0]
    assert X["spend"][0] == pre.clip_["spend"][1] <= train["spend"].max()
    assert pre.transform(train)["age"].max() == hi            # training rows are clipped the same way

def test_preprocessing_learns_from_train_only(train):
    pre = Preprocessor("y", exclude=["id"]).fit(train)
    shifted = train.with_columns(pl.col("age") + 1000)
    assert Preprocessor("y", exclude=["id"]).fit(train).to_dict() == pre.to_dict()
    assert pre.transform(shifted)["age"].max() == pre.clip_["age"][1]    # serving data never moves the bounds

def test_feature_selection_drops_and_says_why(train):
    pre = Preprocessor("y", exclude=["id"], max_missing=0.9).fit(train)
    assert pre.dropped_ == {"flat": "constant", "spend_copy": "duplicate of spend", "sparse": "mostly missing (99% > 90%)"}
    assert not set(pre.dropped_) & set(pre.features_) and not set(pre.dropped_) & set(pre.inputs_)
    pre.transform(train.drop("flat", "spend_copy", "sparse"))   # dropped columns are not needed to serve
    assert Preprocessor.from_dict(pre.to_dict()).dropped_ == pre.dropped_
    assert "sparse" in Preprocessor("y", exclude=["id"], max_missing=1.0).fit(train).features_
    X = pl.DataFrame({"a": [1.0, 2.0, None], "b": [1.0, 2.0, None], "c": [2.0, 1.0, None], "d": [None, 5.0, None]})
    assert select_features(X, 0.5) == {"b": "duplicate of a", "d": "mostly missing (67% > 50%)"}

def test_versions_depend_on_definitions_not_data(train):
    a = Preprocessor("y", {"log_spend": "LN(1 + spend)"}, ["id"]).fit(train)
    b = Preprocessor("y", {"log_spend": "LN(1 + spend)"}, ["id"]).fit(train.with_columns(pl.col("spend", "spend_copy") * 10, pl.col("age") + 5).tail(300))
    assert a.versions_ == b.versions_ and a.clip_ != b.clip_
    c = Preprocessor("y", {"log_spend": "LN(1 + spend)"}, ["id"], clip_quantiles=(0.01, 0.99)).fit(train)
    assert c.versions_["age"] != a.versions_["age"] and c.versions_["plan"] == a.versions_["plan"]
    d = Preprocessor("y", {"log_spend": "LN(2 + spend)"}, ["id"]).fit(train)
    assert d.versions_["log_spend"] != a.versions_["log_spend"] and d.versions_["age"] == a.versions_["age"]
    e = Preprocessor("y", {"log_spend": "LN(1 + spend)"}, ["id"], impute=True, scale=True, rare_min_count=5).fit(train)
    assert all(e.versions_[f] != a.versions_[f] for f in a.features_)     # imputation and scaling define every feature
    f = Preprocessor("y", {"log_spend": "LN(1 + spend)"}, ["id"], scale=True).fit(train)
    assert f.versions_["age"] != a.versions_["age"] and f.versions_["plan"] == a.versions_["plan"]   # categories are never scaled
    assert feature_version("x", "column Float64") == Preprocessor("y", clip_quantiles=None).fit(pl.DataFrame({"x": [1.0, 2.0], "y": [0, 1]})).versions_["x"]

def test_old_preprocessing_json_still_loads(train):
    pre = Preprocessor("y", exclude=["id"], clip_quantiles=None, rare_min_count=1, max_missing=1.0).fit(train.drop("flat", "spend_copy"))
    old = {k: pre.to_dict()[k] for k in ("target", "derived", "exclude", "inputs", "categories", "features", "medians", "versions")}
    legacy = Preprocessor.from_dict(old)
    served = pl.DataFrame({"plan": ["never_seen", "pro"], "age": [500.0, 1.0], "spend": [1.0, 2.0], "sparse": [None, 1.0]})
    assert legacy.transform(served)["plan"][0] is None and legacy.transform(served)["age"][0] == 500.0
    assert legacy.transform(train).equals(pre.transform(train))

# ---------------------------------------------------------------- class imbalance

def test_class_balance_and_downsampling():
    df = pl.DataFrame({"i": range(1000), "y": [1] * 50 + [0] * 950})
    b = class_balance(df["y"], [0, 1], "weight")
    assert b["counts"] == [950, 50] and b["scale_pos_weight"] == 19.0
    assert np.allclose(b["class_weights"], [1000 / (2 * 950), 1000 / (2 * 50)])
    for ratio in (1.0, 3.0):
        small = downsample(df, "y", ratio, seed=7)
        assert small.filter(pl.col("y") == 1)["i"].sort().to_list() == list(range(50))
        assert small.filter(pl.col("y") == 0).height == int(50 * ratio)
        assert downsample(df, "y", ratio, seed=7).equals(small) and not downsample(df, "y", ratio, seed=8).equals(small)
    three = pl.DataFrame({"y": ["a"] * 10 + ["b"] * 30 + ["c"] * 60})
    assert dict(downsample(three, "y", 2.0).group_by("y").len().iter_rows()) == {"a": 10, "b": 20, "c": 20}
    assert class_balance(three["y"], ["a", "b", "c"])["scale_pos_weight"] is None

# ---------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def snapshot_run(tmp_path_factory, cli):
    "A project whose run `x` holds step 00's snapshot (made by the CLI)."
    folder = tmp_path_factory.mktemp("features_project")
    config = write_config(folder)
    res = cli("run", "--steps", "00", "--run-id", "x", cwd=folder)
    assert res.returncode == 0, res.stdout + res.stderr
    return config, folder/"runs"/"x"

def fresh_run(snapshot_run, name: str, **features) -> tuple[str, str]:
    "A new run folder holding step 00's outputs, and a config with `features` settings changed."
    from mlnb.config import load_config, save_config
    config, run = snapshot_run
    target = run.parent/name
    shutil.copytree(run/"00_data", target/"00_data")
    cfg = load_config(config)
    for k, v in features.items(): setattr(cfg.features, k, v)
    return str(save_config(cfg, target/"config.yaml")), str(target)

def test_default_step_end_to_end(snapshot_run):
    from mlnb.train import run_train
    config, run = fresh_run(snapshot_run, "default")
    rec = features.run_features(config, run)
    out = Path(run)/"02_features"
    split, prep = load_json(out/"split.json"), load_json(out/"preprocessing.json")
    assert split["strategy"] == "stratified" and split["imbalance"]["mode"] == "none" and split["imbalance"]["scale_pos_weight"] > 1
    assert {k: len(v) for k, v in split["ids"].items()} == split["counts"] == {k: int(rec["metrics"][f"rows_{k}"]) for k in ("train", "valid", "test")}
    check_manifest(split)
    assert {"settings", "clip", "scale", "dropped", "medians", "categories", "versions"} <= set(prep) and prep["clip"]
    pre = Preprocessor.from_dict(prep)
    test = pl.read_parquet(out/"test.parquet")
    assert pre.transform(test).equals(Preprocessor.from_dict(json.loads((out/"preprocessing.json").read_text())).transform(test))
    table = pl.read_csv(out/"tables"/"features.csv")
    assert set(table["status"]) <= {"kept", "dropped"} and table.filter(pl.col("status") == "kept")["feature"].to_list() == pre.features_
    rec = run_train(config, run)                              # the default run still beats its baseline
    assert rec["metrics"]["valid_roc_auc"] > rec["metrics"]["baseline_dummy_valid_roc_auc"] + 0.1
    assert "scale_pos_weight" not in rec["params"]

def test_time_split_with_downsampling_end_to_end(snapshot_run):
    from mlnb.train import run_train
    config, run = fresh_run(snapshot_run, "time", split="time", imbalance="downsample", downsample_ratio=2.0)
    features.run_features(config, run)
    out = Path(run)/"02_features"
    split = load_json(out/"split.json")
    t = split["time"]
    assert t["train"][1] < t["valid"][0] and t["valid"][1] < t["test"][0]
    train = pl.read_parquet(out/"train.parquet")
    neg, pos = split["imbalance"]["counts"]
    assert (train["churned"] == 1).sum() == pos and (train["churned"] == 0).sum() == int(2 * pos) < neg
    assert split["counts"]["train"] == train.height == split["imbalance"]["rows_used"]
    assert pl.read_parquet(out/"test.parquet")["signup_date"].min() > train["signup_date"].max()
    rec = run_train(config, run)
    baseline = load_json(Path(run)/"03_train"/"baselines.json")["dummy"]
    assert abs(baseline["priors"][1] - pos / (pos + neg)) < 1e-9       # priors from the data, not the downsampled file
    assert rec["metrics"]["valid_roc_auc"] > rec["metrics"]["baseline_dummy_valid_roc_auc"]

def test_group_split_with_class_weights_end_to_end(snapshot_run):
    from mlnb.train import run_train
    config, run = fresh_run(snapshot_run, "group", group_column="age", split="group", imbalance="weight", rare_min_count=5)
    features.run_features(config, run)
    out = Path(run)/"02_features"
    parts = {n: pl.read_parquet(out/f"{n}.parquet") for n in ("train", "valid", "test")}
    ages = {n: set(p["age"].drop_nulls()) for n, p in parts.items()}
    assert not (ages["train"] & ages["valid"] or ages["train"] & ages["test"] or ages["valid"] & ages["test"])
    assert "age" not in load_json(out/"preprocessing.json")["features"]
    rec = run_train(config, run)
    split = load_json(out/"split.json")
    assert rec["params"]["scale_pos_weight"] == split["imbalance"]["scale_pos_weight"] > 1
    assert rec["metrics"]["valid_roc_auc"] > rec["metrics"]["baseline_dummy_valid_roc_auc"]
