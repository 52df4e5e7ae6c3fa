"Source kinds against the real thing on loopback: SQLite and PostgreSQL through `sql`, a paged HTTP API that fails, stacking, incremental collection, PII."
import hashlib, hmac, json, os, sqlite3, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
import polars as pl
import pytest
from mlnb.config import Source
from mlnb.core import MlnbError, load_json
from mlnb.data import (collect_sources, pii_salt, protect_pii, read_http, read_source, read_sql, save_snapshot)
from pg import INSTALL, PG_BIN, PostgresServer, free_port

def sqlite_db(path: Path, rows: list[tuple]) -> Path:
    con = sqlite3.connect(path)
    with con:
        con.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER, ts TEXT, email TEXT)")
        con.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)
    con.close()
    return path

ROWS = [(i, f"2025-10-{i:02d}T09:00:00", f"user{i}@example.com") for i in range(1, 6)]

# --- SQLite through the `sql` kind ---------------------------------------------------------------------------

def test_sql_sqlite_uri(tmp_path):
    db = sqlite_db(tmp_path/"shop.db", ROWS)
    before = db.read_bytes()
    df, rec = read_source(Source(name="shop", kind="sql", uri=f"sqlite:///{db}", query="SELECT id, ts FROM events ORDER BY id"))
    assert df["id"].to_list() == [1, 2, 3, 4, 5] and rec["rows"] == 5 and rec["uri"] == f"sqlite:///{db}"
    with pytest.raises(MlnbError, match="source 'shop': the query failed"):
        read_source(Source(name="shop", kind="sql", uri=f"sqlite:///{db}", query="SELEC id FROM events"))
    with pytest.raises(MlnbError, match="could not connect"):
        read_sql(f"sqlite:///{tmp_path/'nope.db'}", "SELECT 1", "shop")
    assert not (tmp_path/"nope.db").exists() and db.read_bytes() == before   # read-only, raw data untouched

# --- PostgreSQL ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres():
    "A throwaway PostgreSQL 15 server on 127.0.0.1 (never skipped: missing binaries fail with the install command)."
    if not (PG_BIN/"initdb").is_file():
        pytest.fail(f"PostgreSQL 15 is not installed ({PG_BIN/'initdb'} missing); {INSTALL}")
    server = PostgresServer()
    try:
        server.execute("CREATE TABLE customers (id int PRIMARY KEY, plan text, charges double precision, signed timestamp)",
                       "INSERT INTO customers SELECT g, CASE WHEN g % 2 = 0 THEN 'basic' ELSE 'premium' END, g * 1.5, "
                       "timestamp '2025-01-01' + g * interval '1 day' FROM generate_series(1, 50) g")
        yield server
    finally: server.stop()

def test_sql_postgresql(postgres):
    src = Source(name="crm", kind="sql", uri=postgres.uri, query="SELECT * FROM customers ORDER BY id")
    df, rec = read_source(src)
    assert df.height == 50 and df["id"].to_list() == list(range(1, 51))
    assert df.schema["signed"] == pl.Datetime("us") and df["charges"].sum() == pytest.approx(1.5 * 50 * 51 / 2)
    assert rec["uri"] == postgres.uri and rec["query"] == src.query

def test_sql_postgresql_errors(postgres):
    with pytest.raises(MlnbError) as e:
        read_sql(postgres.uri, "SELEC * FROM customers", "crm")
    assert "source 'crm': the query failed on" in str(e.value) and "syntax error" in str(e.value) and "Fix:" in str(e.value)
    dead = f"postgresql://app:hunter2@127.0.0.1:{free_port()}/shop"
    t = time.perf_counter()
    with pytest.raises(MlnbError) as e:
        read_sql(dead, "SELECT 1", "crm", timeout_s=5)
    msg = str(e.value)
    assert "source 'crm': could not connect to postgresql://app:***@127.0.0.1:" in msg and "hunter2" not in msg and "Fix:" in msg
    assert time.perf_counter() - t < 10

# --- HTTP ------------------------------------------------------------------------------------------------------

RECORDS = [{"id": i, "amount": i * 2.5} for i in range(1, 26)]

class FlakyAPI(BaseHTTPRequestHandler):
    "Paged JSON at /items: the first request for page 2 answers 500, the first for page 3 is slower than the client's timeout."
    log: list = []
    def log_message(self, *args): pass
    def do_GET(self):
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        type(self).log.append((url.path, q.get("page")))
        if url.path == "/down": return self._send(503, {"error": "down"})
        if url.path == "/missing": return self._send(404, {"error": "no"})
        page, size = int(q["page"]), int(q["size"])
        tries = type(self).log.count((url.path, q["page"]))
        if page == 2 and tries == 1: return self._send(500, {"error": "boom"})
        if page == 3 and tries == 1: time.sleep(1.0)   # the client gave up after 0.3 s and retried
        self._send(200, {"meta": {"page": page}, "data": RECORDS[(page - 1) * size: page * size]})
    def _send(self, status, body):
        data = json.dumps(body).encode()
        try:
            self.send_response(status); self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError): pass

@pytest.fixture()
def api():
    FlakyAPI.log = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyAPI)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown(); server.server_close()

FAST = dict(timeout_s=0.3, backoff_s=0.01)

def test_http_paged_with_retries(api):
    http = dict(records_key="data", size_param="size", page_size=10, attempts=3, **FAST)
    df, rec = read_source(Source(name="sales", kind="http", uri=f"{api}/items", http=http))
    assert df["id"].to_list() == list(range(1, 26))                  # every row exactly once
    assert FlakyAPI.log == [("/items", "1"), ("/items", "2"), ("/items", "2"), ("/items", "3"), ("/items", "3")]
    assert rec["rows"] == 25 and rec["uri"] == f"{api}/items"

def test_http_stops_on_empty_page(api):
    df = read_http(f"{api}/items", "sales", records_key="data", size_param="size", page_size=5, first_page=6, **FAST)
    assert df.width == 0 and FlakyAPI.log == [("/items", "6")]     # page 6 of 5-row pages is empty: stop

def test_http_permanent_failure(api):
    t = time.perf_counter()
    with pytest.raises(MlnbError) as e:
        read_http(f"{api}/down", "sales", attempts=4, **FAST)
    assert f"source 'sales': GET {api}/down?page=1&page_size=100 failed after 4 attempts; last: HTTP 503" in str(e.value)
    assert len(FlakyAPI.log) == 4 and time.perf_counter() - t < 5
    with pytest.raises(MlnbError, match="answered HTTP 404"):
        read_http(f"{api}/missing", "sales", attempts=4, **FAST)
    assert len(FlakyAPI.log) == 5                                    # a 4xx is not retried
    with pytest.raises(MlnbError, match=r"failed after 2 attempts; last: ConnectError"):
        read_http(f"http://127.0.0.1:{free_port()}/x", "sales", attempts=2, **FAST)

# --- stacking, incremental collection ---------------------------------------------------------------------------

def test_stack_sources(tmp_path):
    db = sqlite_db(tmp_path/"a.db", ROWS[:3])
    (tmp_path/"b.csv").write_text("id,ts,channel\n10,2025-11-01T00:00:00,web\n")
    df, recs = collect_sources([Source(name="a", kind="sql", uri=f"sqlite:///{db}", query="SELECT id, ts FROM events"),
                                Source(name="b", kind="csv", path=str(tmp_path/"b.csv"), how="stack")])
    assert df["id"].to_list() == [1, 2, 3, 10] and df.columns == ["id", "ts", "channel"]
    assert df["channel"].to_list() == [None, None, None, "web"] and [r["how"] for r in recs] == ["join", "stack"]

def test_incremental_collection(tmp_path):
    db = sqlite_db(tmp_path/"events.db", ROWS[:3])
    logs = tmp_path/"logs"; logs.mkdir()
    pl.DataFrame({"id": [100, 101], "ts": ["2025-10-01T00:00:00", "2025-10-02T00:00:00"]}).write_ndjson(logs/"a.jsonl")
    sources = [Source(name="db", kind="sql", uri=f"sqlite:///{db}", query="SELECT id, ts FROM events", watermark="ts"),
               Source(name="logs", kind="jsonl", path=str(logs/"*.jsonl"), how="stack", watermark="ts")]
    first, recs = collect_sources(sources)
    m1 = save_snapshot(first, tmp_path/"s1"/"snapshot.parquet", recs)
    assert sorted(first["id"].to_list()) == [1, 2, 3, 100, 101]
    assert m1["sources"][0]["watermark"] == {"column": "ts", "value": "2025-10-03T09:00:00"}
    # new rows arrive in both sources; one is older than the watermark (late data is not re-read by design)
    time.sleep(0.05)
    sqlite_db(db, ROWS[3:])
    pl.DataFrame({"id": [102], "ts": ["2025-10-03T00:00:00"]}).write_ndjson(logs/"b.jsonl")
    second, recs2 = collect_sources(sources, previous=tmp_path/"s1"/"manifest.json")
    assert sorted(second["id"].to_list()) == [4, 5, 102]            # only what is new, each once
    assert recs2[0]["watermark"]["value"] == "2025-10-05T09:00:00" and recs2[1]["skipped_files"] == [str(logs/"a.jsonl")]
    third, recs3 = collect_sources(sources, previous={"sources": recs2})
    assert third.height == 0 and recs3[0]["watermark"] == recs2[0]["watermark"]   # nothing new: watermark kept
    # a file copied in with an old time stamp (cp -p, tar) is new to the collection: read, not skipped
    pl.DataFrame({"id": [103], "ts": ["2025-10-04T00:00:00"]}).write_ndjson(logs/"c.jsonl")
    os.utime(logs/"c.jsonl", (0, 0))
    fourth, recs4 = collect_sources(sources, previous={"sources": recs3})
    assert fourth["id"].to_list() == [103] and str(logs/"c.jsonl") not in recs4[1]["skipped_files"]

# --- privacy ----------------------------------------------------------------------------------------------------

def test_pseudonymise_snapshot(tmp_path):
    df = pl.DataFrame({"id": [1, 2, 3, 4], "email": ["ann@example.com", "bob@example.com", None, "ann@example.com"],
                       "phone": ["+1-555-0001", "+1-555-0002", "+1-555-0003", "+1-555-0001"]})
    out = protect_pii(df, ["email", "phone"], "pseudonymise", salt="s1")
    assert out["email"][0] == out["email"][3] != out["email"][1] and out["email"][2] is None
    assert out["email"][0] == hmac.new(b"s1", b"ann@example.com", hashlib.sha256).hexdigest()
    assert protect_pii(df, ["email"], "pseudonymise", salt="s2")["email"][0] != out["email"][0]
    path = tmp_path/"snap"/"snapshot.parquet"
    save_snapshot(out, path, [], {"mode": "pseudonymise", "columns": ["email", "phone"]})
    out.write_csv(tmp_path/"plain.csv")                         # uncompressed bytes too, so the check can fail
    for f in (path, path.with_name("manifest.json"), tmp_path/"plain.csv"):
        raw = f.read_bytes()
        assert not any(v.encode() in raw for v in ("ann@example.com", "bob@example.com", "+1-555-0001", "example.com")), f
    back = pl.read_parquet(path)
    assert back.select(pl.col("email", "phone").str.contains("@|555").any()).row(0) == (False, False)
    assert load_json(path.with_name("manifest.json"))["pii"] == {"mode": "pseudonymise", "columns": ["email", "phone"]}
    assert protect_pii(df, ["email", "phone", "absent"]).columns == ["id"]           # drop stays the default

def test_missing_salt(tmp_path, monkeypatch):
    monkeypatch.delenv("MLNB_PII_SALT", raising=False)
    with pytest.raises(MlnbError, match="needs a salt") as e:
        pii_salt(tmp_path/"absent.txt")
    assert "MLNB_PII_SALT" in str(e.value)
    with pytest.raises(MlnbError, match="needs a salt"):
        protect_pii(pl.DataFrame({"email": ["a@b.c"]}), ["email"], "pseudonymise", salt=None)
    (tmp_path/"salt.txt").write_text("from-file\n")
    assert pii_salt(tmp_path/"salt.txt") == "from-file"
    monkeypatch.setenv("MLNB_PII_SALT", "from-env")
    assert pii_salt(tmp_path/"salt.txt") == "from-env"
