"Bad input at the command line: one clear message, a non-zero exit, and nothing created."
import json, time
from pathlib import Path
import pytest
from conftest import write_config

def files_in(folder: Path) -> set:
    return {p.relative_to(folder) for p in folder.rglob("*")}

def test_help_is_fast(cli, tmp_path):
    t = time.perf_counter()
    res = cli("--help", cwd=tmp_path)
    assert res.returncode == 0 and "run" in res.stdout and "serve" in res.stdout
    assert time.perf_counter() - t < 5, "the CLI should not import the heavy stack just to parse arguments"

def test_missing_config(cli, tmp_path):
    res = cli("run", "-c", "nope.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert "nope.yaml: config file not found" in res.stderr and "Traceback" not in res.stderr
    assert files_in(tmp_path) == set()

@pytest.mark.parametrize("text, expected", [
    ("train:\n  num_leaves: 63\n    learning_rate: 0.1\n", "not valid YAML at line 3"),
    ("train:\n  num_leaves: many\n", "'train.num_leaves' (line 2): Input should be a valid integer"),
    ("train:\n  num_leafs: 63\n", "unknown key 'train.num_leafs' (line 2): did you mean 'num_leaves'?"),
    ("trian:\n  num_leaves: 63\n", "unknown key 'trian' (line 1): did you mean 'train'?"),
    ("data:\n  sources:\n    - {name: x, kind: xls, path: a.xls}\n", "'data.sources.0.kind' (line 3)"),
    ("- just\n- a list\n", "the top level must be a mapping"),
    ("train:\n  num_leaves: 63\ntrain:\n  learning_rate: 0.1\n", "line 3, column 1: 'train' appears twice in one section"),
])
def test_bad_config(cli, tmp_path, text, expected):
    (tmp_path/"mlnb.yaml").write_text(text)
    res = cli("run", cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert expected in res.stderr and "Traceback" not in res.stderr
    assert files_in(tmp_path) == {Path("mlnb.yaml")}, "nothing may be created for a bad config"

def test_all_problems_reported_at_once(cli, tmp_path):
    (tmp_path/"mlnb.yaml").write_text("seed: x\ntune:\n  n_trials: 0\ntrain:\n  num_leafs: 3\n")
    res = cli("run", cwd=tmp_path)
    assert res.returncode == 2
    assert all(s in res.stderr for s in ("'seed' (line 1)", "'tune.n_trials' (line 3)", "unknown key 'train.num_leafs' (line 5)"))

@pytest.mark.parametrize("args, expected", [
    (["-p", "train.num_leaves"], "not of the form key=value"),
    (["-p", "train.num_leaves=lots"], "(from -p train.num_leaves=lots)"),
    (["-p", "train.nope=1"], "unknown key 'train.nope'"),
    (["--steps", "09"], "unknown step '09'"),
    (["--steps", "05-02"], "runs backwards"),
    (["--resume", "no-such-run"], "no run 'no-such-run'"),
    (["-p", "data.sources.x=1"], "'x' is not an index of the list 'data.sources'"),
    (["-p", "train.num_leaves=[1"], "-p train.num_leaves=[1: not valid YAML"),
    (["--run-id", "../escaped"], "'../escaped' is not a run id"),
])
def test_bad_arguments(cli, tmp_path, args, expected):
    write_config(tmp_path)
    res = cli("run", *args, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert expected in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path/"runs").exists() and not (tmp_path/"data").exists()

def test_unknown_model_reference(cli, tmp_path):
    res = cli("serve", "churn@production", "--registry", tmp_path/"registry", cwd=tmp_path)
    assert res.returncode == 2 and "no model 'churn' in the registry" in res.stderr and "(no such folder)" in res.stderr
    (tmp_path/"registry"/"churn").mkdir(parents=True)
    res = cli("serve", "churn@production", "--registry", tmp_path/"registry", cwd=tmp_path)
    assert res.returncode == 2 and "has no 'production' alias yet" in res.stderr
    res = cli("serve", "nope@production", "--registry", tmp_path/"registry", cwd=tmp_path)
    assert res.returncode == 2 and "no model 'nope'" in res.stderr and "models there: churn" in res.stderr

def test_models_lists_versions(cli, first_run, project):
    res = cli("models", cwd=project)
    assert res.returncode == 0
    assert "churn  (production=v1)" in res.stdout and "v1" in res.stdout and "gate passed" in res.stdout

def test_models_show_and_audit_after_a_run(cli, first_run, project):
    res = cli("models", "churn", cwd=project)   # `mlnb models [NAME]` still lists
    assert res.returncode == 0 and "churn  (production=v1)" in res.stdout
    res = cli("models", "show", "churn@production", cwd=project)
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    lineage = shown["lineage"]
    assert lineage["run_id"] == "first" and lineage["data_snapshot"] and lineage["feature_versions"] and "git_commit" in lineage
    assert shown["onnx"]["exported"] and shown["onnx"]["parity"]["max_abs_diff"] <= 1e-5, shown["onnx"]
    res = cli("models", "audit", "churn", "--verify", cwd=project)
    assert res.returncode == 0 and "audit log intact" in res.stdout and "register version=v1" in res.stdout


def test_config_words_and_encoding(cli, tmp_path):
    "`off` is the word the config documents (YAML 1.1 would read a boolean); a non-UTF-8 byte names its line."
    from mlnb.config import load_config
    write_config(tmp_path)
    text = (tmp_path/"mlnb.yaml").read_text()
    assert "  onnx: auto\n" in text
    (tmp_path/"mlnb.yaml").write_text(text.replace("  onnx: auto\n", "  onnx: off\n"))
    assert load_config(tmp_path/"mlnb.yaml").package.onnx == "off"
    (tmp_path/"bad.yaml").write_bytes(b"seed: 1\n# caf\xe9\n")
    res = cli("run", "-c", "bad.yaml", cwd=tmp_path)
    assert res.returncode == 2 and "not UTF-8 text: byte b'\\xe9' on line 2" in res.stderr and "Traceback" not in res.stderr, res.stderr

def test_registry_commands_check_the_name_and_the_files(cli, first_run, project, tmp_path):
    "A mistyped model is an error that creates nothing; `audit --verify` fails on a changed file or a missing version."
    import shutil
    for args in (["audit", "nope", "--verify"], ["rollback", "nope"], ["list", "nope"], ["promote", "nope", "v1", "--alias", "staging"]):
        res = cli("models", *args, cwd=project)
        assert res.returncode == 2 and "no model 'nope'" in res.stderr, (args, res.stderr)
    assert not (project/"registry"/"nope").exists()
    reg = tmp_path/"registry"
    shutil.copytree(project/"registry", reg)
    with open(reg/"churn"/"v1"/"model.txt", "a") as f: f.write("# edited\n")
    res = cli("models", "audit", "churn", "--verify", "--registry", reg, cwd=project)
    assert res.returncode == 1 and "v1: model package failed its integrity check (model.txt: sha256 differs)" in res.stderr
    shutil.rmtree(reg/"churn"/"v1")
    res = cli("models", "audit", "churn", "--verify", "--registry", reg, cwd=project)
    assert res.returncode == 1 and "v1: registered, but its folder is missing" in res.stderr and "alias production points at v1, which does not exist" in res.stderr

def test_outputs_never_overwrite_inputs_or_the_registry(cli, first_run, project, tmp_path):
    rows = project/"runs"/"first"/"02_features"/"test.parquet"
    src = tmp_path/"rows.parquet"; src.write_bytes(rows.read_bytes())
    before = src.read_bytes()
    for args, expected in ((["--output", src], "the output would overwrite the input"), (["--output", tmp_path], "is a folder"),
                           (["--output", project/"registry"/"churn"/"v1"/"signature.json"], "is inside the model registry"),
                           (["--output", tmp_path/"s.csv", "--chunk", "0"], "chunks of 0 rows")):
        res = cli("predict", "churn@production", "--input", src, *args, cwd=project)
        assert res.returncode == 2 and expected in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    assert src.read_bytes() == before
    res = cli("export", "churn@production", project/"registry"/"churn"/"v9", cwd=project)
    assert res.returncode == 2 and "is inside the model registry" in res.stderr and not (project/"registry"/"churn"/"v9").exists()
    res = cli("models", "audit", "churn", "--verify", cwd=project)
    assert res.returncode == 0, res.stderr

def test_predict_reads_the_format_its_extension_names_and_names_a_bad_value(cli, first_run, project, tmp_path):
    "TSV, JSONL and .pq inputs score like Parquet; a value that does not fit its column is named with its row; no output is left."
    import polars as pl
    rows = pl.read_parquet(project/"runs"/"first"/"02_features"/"test.parquet").head(50)
    rows.write_csv(tmp_path/"rows.tsv", separator="\t"); rows.write_ndjson(tmp_path/"rows.jsonl"); rows.write_parquet(tmp_path/"rows.pq")
    scores = []
    for src, out in (("rows.pq", "a.parquet"), ("rows.tsv", "b.csv"), ("rows.jsonl", "c.jsonl")):
        res = cli("predict", "churn@production", "--input", tmp_path/src, "--output", tmp_path/out, cwd=project)
        assert res.returncode == 0 and "scored 50 rows" in res.stdout, res.stderr
        read = dict(parquet=pl.read_parquet, csv=pl.read_csv, jsonl=pl.read_ndjson)[out.split(".")[1]]
        scores.append(read(tmp_path/out)["probability"].to_list())
    assert scores[0] == scores[1] == scores[2] and len(set(scores[0])) > 1
    bad = rows.with_columns(pl.when(pl.int_range(pl.len()) == 17).then(pl.lit("17/03/2024")).otherwise(pl.col("signup_date").cast(pl.String)).alias("signup_date"))
    bad.write_csv(tmp_path/"bad.csv")
    res = cli("predict", "churn@production", "--input", tmp_path/"bad.csv", "--output", tmp_path/"x.parquet", cwd=project)
    assert res.returncode == 2 and "column 'signup_date', row 18 (line 19): '17/03/2024' is not a valid Date (dates are written YYYY-MM-DD)" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path/"x.parquet").exists()
    res = cli("predict", "churn@production", "--input", tmp_path/"rows.tsv", "--output", tmp_path/"x.txt", cwd=project)
    assert res.returncode == 2 and "cannot tell the format of 'x.txt' from its extension" in res.stderr


def test_predict_reads_and_writes_a_decimal_comma_file(cli, first_run, project, tmp_path):
    "A ';'-separated file with decimal commas scores as the same rows in Parquet do, given --separator and --decimal-comma; without them the error says which to pass."
    import polars as pl
    rows = pl.read_parquet(project/"runs"/"first"/"02_features"/"test.parquet").head(50)
    rows.write_parquet(tmp_path/"rows.parquet"); rows.write_csv(tmp_path/"rows.csv", separator=";", decimal_comma=True)
    predict = lambda src, out, *more: cli("predict", "churn@production", "--input", tmp_path/src, "--output", tmp_path/out, *more, cwd=project)
    assert predict("rows.parquet", "a.parquet").returncode == 0
    res = predict("rows.csv", "b.csv", "--separator", ";", "--decimal-comma")
    assert res.returncode == 0 and "scored 50 rows" in res.stdout, res.stderr
    written = (tmp_path/"b.csv").read_text()
    assert written.startswith("customer_id;") and ";0," in written, "written back in the same dialect"
    assert pl.read_csv(tmp_path/"b.csv", separator=";", decimal_comma=True)["probability"].to_list() == pl.read_parquet(tmp_path/"a.parquet")["probability"].to_list()
    res = predict("rows.csv", "c.parquet")
    assert res.returncode == 2 and "its header line is ';'-separated, not ',': pass --separator ';' --decimal-comma." in res.stderr, res.stderr
    res = predict("rows.csv", "c.parquet", "--decimal-comma")
    assert res.returncode == 2 and "decimal commas need a field separator other than ','" in res.stderr and not (tmp_path/"c.parquet").exists()

def test_data_commands_refuse_what_would_lose_or_miss_data(cli, first_run, project):
    res = cli("data", "prune", "--keep", "0", cwd=project)
    assert res.returncode == 2 and "--keep 0 would delete the newest snapshot" in res.stderr
    res = cli("data", "erase", "--id", "5", "--column", "custmer_id", "--reason", "test", cwd=project)
    assert res.returncode == 2 and "the snapshots have no column 'custmer_id'" in res.stderr

def test_resume_refuses_a_run_that_is_still_running(cli, project, tmp_path):
    import subprocess, sys
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "mlnb"])     # a process that looks like a running `mlnb run`
    try:
        run = project/"runs"/"live"
        run.mkdir(parents=True)
        (run/"run.json").write_text(json.dumps(dict(status="running", pid=live.pid, selected=["00_data"], steps={"00_data": {"status": "running"}})))
        res = cli("run", "--resume", "live", cwd=project)
        assert res.returncode == 2 and f"run live is still running (process {live.pid})" in res.stderr, res.stderr
    finally:
        live.kill(); live.wait()
        import shutil; shutil.rmtree(project/"runs"/"live", ignore_errors=True)

def test_a_misspelt_pii_column_stops_the_data_step(cli, first_run, project):
    "A PII name that matches no column but nearly matches one is an error: otherwise the real column would reach the snapshot."
    res = cli("run", "-p", "data.pii=[emial, phone]", "--steps", "00", "--run-id", "pii-typo", cwd=project)
    assert res.returncode == 1 and "data.pii lists 'emial', which is not a column; did you mean 'email'?" in res.stdout + res.stderr, res.stdout + res.stderr
    assert not list((project/"runs"/"pii-typo").rglob("snapshot.parquet"))

def test_output_piped_into_head_stops_quietly():
    "`mlnb models audit churn | head`: when the reader goes away, mlnb stops without a BrokenPipeError traceback."
    import subprocess, sys
    code = "import sys; from mlnb import cli; cli._models = lambda a: [print('x' * 100) for _ in range(100_000)] and 0; sys.exit(cli.main(['models']))"
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline().startswith(b"xxx")
    p.stdout.close()                                       # what `head -1` does after its line
    err = p.stderr.read().decode(); p.wait(timeout=60)
    assert p.returncode == 141 and "Traceback" not in err and "BrokenPipe" not in err, (p.returncode, err)
