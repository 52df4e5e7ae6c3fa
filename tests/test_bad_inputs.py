"""The bad-input corpus: malformed files through `mlnb run --steps 00-02`.

Each case yields a clear error naming the file, column or row where it can (exit 1, no traceback, no
partial snapshot) or runs on with what it did recorded; the raw file is never modified. The SQL, HTTP and
schema-drift cases live beside their readers and checks in test_sources.py and test_validate.py.
"""
import hashlib, json
import polars as pl
import pytest
import yaml

GOOD = "row_id,x,cat,target\n" + "".join(f"{i},{i * 0.5},{'abc'[i % 3]},{i % 2}\n" for i in range(1, 41))   # no column predicts the target

SEMI = "row_id;x;cat;target\n" + "".join(f"{i};{i},5;{'abc'[i % 3]};{i % 2}\n" for i in range(1, 41))   # as a spreadsheet in a decimal-comma locale saves it

def rows(lines): return "row_id,x,cat,target\n" + "".join(lines)

CASES = {  # name: (file name, content bytes, "error" and what the message must name | "ok")
    "empty_file":        ("main.csv", b"", ("error", ["main.csv"])),
    "header_only":       ("main.csv", b"row_id,x,cat,target\n", ("error", ["min_rows", "0 rows"])),
    "wrong_delimiter":   ("main.csv", GOOD.replace(",", ";").encode(), ("error", ["main.csv", "single column, 'row_id;x;cat;target'", "set `separator: ';'` on source 'main'"])),
    "ragged_rows":       ("main.csv", (GOOD + "41,1.0,a,1,EXTRA,MORE\n").encode(), ("error", ["main.csv", "row 41 (line 42) has 6 field(s) where the header has 4"])),
    "short_row":         ("main.csv", (GOOD + "41,1.0\n").encode(), ("error", ["main.csv", "row 41 (line 42) has 2 field(s) where the header has 4"])),
    "non_utf8":          ("main.csv", (GOOD + "41,1.0,caf\xe9,1\n").encode("latin-1"), ("error", ["main.csv", "not UTF-8 text"])),
    "bom":               ("main.csv", b"\xef\xbb\xbf" + GOOD.encode(), ("ok", [])),
    "duplicate_columns": ("main.csv", GOOD.replace("row_id,x,cat,target", "row_id,x,x,target").encode(), ("error", ["main.csv", "'x' more than once"])),
    "all_null_column":   ("main.csv", rows(f"{i},,{'abc'[i % 3]},{i % 2}\n" for i in range(1, 41)).encode(), ("error", ["missing on 'x'", "100.0% missing"])),
    "nan_in_target":     ("main.csv", rows(f"{i},{i},a,{'NaN' if i == 7 else i % 2}\n" for i in range(1, 41)).encode(), ("error", ["missing on 'target'", "e.g. id 7"])),
    "inf_in_target":     ("main.csv", rows(f"{i},{i},a,{'inf' if i == 9 else i * 1.5}\n" for i in range(1, 41)).encode(), ("error", ["target_finite on 'target'", "1 NaN or infinite value, e.g. id 9"])),
    "missing_target":    ("main.csv", GOOD.replace("target", "label").encode(), ("error", ["'target'", "label"])),
    "mixed_types":       ("main.csv", rows(f"{i},{'n/a' if i == 5 else i},a,{i % 2}\n" for i in range(1, 41)).encode(), ("ok", [])),
    "rare_category":     ("main.csv", rows(f"{i},{i},{'zz' if i == 40 else 'abc'[i % 3]},{i % 2}\n" for i in range(1, 41)).encode(), ("ok", [])),
    "dates_mixed":       ("main.csv", rows(f"{i},{i},{'2024-01-0' + str(i % 9 + 1) if i % 2 else '01/0' + str(i % 9 + 1) + '/2024'},{i % 2}\n" for i in range(1, 41)).encode(), ("ok", [])),
    "huge_numbers":      ("main.csv", rows(f"{i},{'9' * 30 if i == 3 else i},a,{i % 2}\n" for i in range(1, 41)).encode(), ("ok", [])),
    "duplicate_ids":     ("main.csv", (GOOD + "40,1.0,a,1\n").encode(), ("error", ["unique on 'row_id': 2 rows sharing a value with another row e.g. id 40\n"])),
    "semicolon_decimal_comma": ("main.csv", SEMI.encode(), ("error", ["main.csv", "has 2 field(s) where the header has 1", "set `separator: ';'` and `decimal_comma: true` on source 'main'"])),
    "nan_in_feature":    ("main.csv", rows(f"{i},{'NaN' if i % 10 == 3 else i},{'abc'[i % 3]},{i % 2}\n" for i in range(1, 41)).encode(), ("ok", [])),  # NaN is missing
    "inf_in_feature":    ("main.csv", rows(f"{i},{'inf' if i == 5 else i},{'abc'[i % 3]},{i % 2}\n" for i in range(1, 41)).encode(), ("error", ["in_range on 'x'", "e.g. id 5 = inf"])),
    "malformed_jsonl":   ("events.jsonl", b'{"row_id": 1, "n": 2}\n{"row_id": 2, "n": \n{"row_id": 3, "n": 4}\n', ("error", ["events.jsonl", "line 2 is not valid JSON"])),
}

def project(tmp_path, name, content):
    sources = [{"name": "main", "kind": "csv", "path": "main.csv"}]
    if name.endswith(".jsonl"):
        (tmp_path/"main.csv").write_text(GOOD)
        sources.append({"name": "events", "kind": "jsonl", "path": name, "join_on": "row_id", "aggregate": {"n_events": "count"}})
    (tmp_path/name).write_bytes(content)
    cfg = {"data": {"target": "target", "id_column": "row_id", "time_column": None, "pii": [], "synthetic": None, "sources": sources},
           "validate": {"min_rows": 10, "ranges": {}}, "features": {"derived": {}}}
    (tmp_path/"mlnb.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path/name

@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, cli, tmp_path):
    name, content, (outcome, named) = CASES[case]
    raw = project(tmp_path, name, content)
    before = hashlib.sha256(raw.read_bytes()).hexdigest()
    res = cli("run", "--steps", "00-02", "--run-id", "r", cwd=tmp_path)
    out = res.stdout + res.stderr
    assert "Traceback" not in out, out
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == before, "the raw input was modified"
    if outcome == "ok":
        assert res.returncode == 0, out
    else:
        assert res.returncode == 1, out
        said = out.replace(str(tmp_path), "<project>")      # the test's folder is named after the case: it must not supply the words
        for word in named: assert word in said, f"the message should name {word!r}:\n{said}"
        rec = json.loads((tmp_path/"runs"/"r"/"run.json").read_text())
        failed = [n for n, s in rec["steps"].items() if s["status"] == "failed"]
        assert len(failed) == 1
        if failed[0] == "00_data": assert not (tmp_path/"runs"/"r"/"00_data"/"snapshot.parquet").exists(), "no partial snapshot"

def test_separator_and_decimal_comma(cli, tmp_path):
    "A ';'-separated file with decimal commas reads by config alone once the source says so."
    project(tmp_path, "main.csv", SEMI.encode())
    cfg = yaml.safe_load((tmp_path/"mlnb.yaml").read_text())
    cfg["data"]["sources"][0].update(separator=";", decimal_comma=True)
    (tmp_path/"mlnb.yaml").write_text(yaml.safe_dump(cfg))
    res = cli("run", "--steps", "00-02", "--run-id", "r", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    snap = pl.read_parquet(tmp_path/"runs"/"r"/"00_data"/"snapshot.parquet")
    assert snap.schema["x"] == pl.Float64 and snap.sort("row_id")["x"].head(3).to_list() == [1.5, 2.5, 3.5]
    cfg["data"]["sources"][0].update(kind="parquet")
    (tmp_path/"mlnb.yaml").write_text(yaml.safe_dump(cfg))
    res = cli("run", "--steps", "00", cwd=tmp_path)
    assert res.returncode == 2 and "'separator' and 'decimal_comma' are for csv and tsv sources, not parquet" in res.stderr, res.stderr
