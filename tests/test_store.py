"The snapshot store through the CLI: every run's snapshot is stored once, listed, shown, diffed and pruned."
import json
from conftest import write_config

def test_data_commands(cli, tmp_path):
    write_config(tmp_path)
    for rows in (3000, 3500):
        res = cli("run", "--steps", "00", "-p", f"data.synthetic.rows={rows}", "-p", f"data.synthetic.dir=data/c{rows}",
                  *[a for i, f in enumerate(["customers.db", "billing.csv", "events/*.jsonl"]) for a in ("-p", f"data.sources.{i}.path=data/c{rows}/{f}")],
                  cwd=tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
    res = cli("run", "--steps", "00", "--force", "-p", "data.synthetic.rows=3000", "-p", "data.synthetic.dir=data/c3000",
              *[a for i, f in enumerate(["customers.db", "billing.csv", "events/*.jsonl"]) for a in ("-p", f"data.sources.{i}.path=data/c3000/{f}")],
              cwd=tmp_path)
    assert res.returncode == 0
    listing = cli("data", "list", cwd=tmp_path)
    assert listing.returncode == 0
    ids = [p.name for p in (tmp_path/"data"/"snapshots").iterdir() if not p.name.startswith(".")]
    assert len(ids) == 2, "the same data collected twice must be stored once"
    assert all(i in listing.stdout for i in ids)
    head, *lines = listing.stdout.splitlines()                 # a text table, oldest first: no model trained on either yet
    assert head.split() == ["id", "created", "(UTC)", "rows", "columns", "parent", "models"], listing.stdout
    assert [line.split()[3:] for line in lines] == [["3,000", "15", "-", "-"], ["3,500", "15", lines[0].split()[0], "-"]], listing.stdout
    first, second = sorted(ids, key=lambda i: json.loads((tmp_path/"data"/"snapshots"/i/"manifest.json").read_text())["created"])
    shown = json.loads(cli("data", "show", second[:6], cwd=tmp_path).stdout)
    assert shown["rows"] == 3500 and shown["parent"] == first
    d = json.loads(cli("data", "diff", first, second, cwd=tmp_path).stdout)
    assert d["rows"] == {"a": 3000, "b": 3500, "change": 500} and d["added"] == d["removed"] == [] and d["retyped"] == {}
    pruned = cli("data", "prune", "--keep", "1", cwd=tmp_path)
    assert pruned.returncode == 0 and first in pruned.stdout
    assert [p.name for p in (tmp_path/"data"/"snapshots").iterdir() if not p.name.startswith(".")] == [second]
    bad = cli("data", "show", "zzzz", cwd=tmp_path)
    assert bad.returncode == 2 and "no snapshot id starts with 'zzzz'" in bad.stderr
