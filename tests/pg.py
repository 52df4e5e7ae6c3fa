"A throwaway PostgreSQL server for tests: Debian's postgresql 15 binaries, trust auth, loopback only."
import os, shutil, socket, subprocess, tempfile
from pathlib import Path

PG_BIN = Path(os.environ.get("MLNB_PG_BIN", "/usr/lib/postgresql/15/bin"))
INSTALL = "install it with: sudo apt-get update && sudo apt-get install -y postgresql (.ci/run does this when it runs as root)"

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

class PostgresServer:
    "initdb + pg_ctl start in a temporary folder; `stop()` removes everything."
    def __init__(self):
        missing = [b for b in ("initdb", "pg_ctl") if not (PG_BIN/b).is_file()]
        if missing: raise RuntimeError(f"PostgreSQL binaries {missing} not found in {PG_BIN}; {INSTALL}")
        self.port, self.root = free_port(), Path(tempfile.mkdtemp(prefix="mlnb-pg-"))
        self.data, self.log = self.root/"data", self.root/"server.log"
        # initdb refuses to run as root: run the server as the `postgres` user then
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.prefix: shutil.chown(self.root, "postgres", "postgres")
        self._run(PG_BIN/"initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
        self._run(PG_BIN/"pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start",
                  "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off")
        self.uri = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args):
        res = subprocess.run([*self.prefix, *map(str, args)], capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(map(str, args))} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}\n{log}")

    def execute(self, *statements: str):
        "Run SQL statements (autocommit) through psycopg."
        import psycopg
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as con:
            for s in statements: con.execute(s)

    def stop(self):
        try: self._run(PG_BIN/"pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally: shutil.rmtree(self.root, ignore_errors=True)
