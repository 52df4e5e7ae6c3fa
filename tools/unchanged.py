"""Run a command and fail if it changed any file of the repository.

    python tools/unchanged.py -- nbdev_clean

This is how `make check` proves the notebooks are clean (nbdev_clean changes nothing) and the
library is in sync with them (nbdev_export changes nothing), as nbdev's own CI does.
"""
import hashlib, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def files() -> list[Path]:
    "Tracked and untracked-but-not-ignored files (every file when git is unavailable)."
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        return [ROOT/p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        return [p for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts and ".git" not in p.parts]

def state() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files() if p.is_file()}

def main(argv: list[str]) -> int:
    cmd = argv[argv.index("--") + 1:] if "--" in argv else argv
    if not cmd: print(__doc__); return 2
    before = state()
    run = subprocess.run(cmd, cwd=ROOT)
    if run.returncode: print(f"unchanged.py: `{' '.join(cmd)}` failed with exit code {run.returncode}"); return run.returncode
    after = state()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        name = Path(cmd[0]).name
        print(f"`{name}` changed {len(changed)} file(s); the committed files are not what it produces:")
        for c in changed: print(f"  {c}")
        print(f"Run `{name}` (or `make outputs` / `make readme`), review, and commit the result.")
        return 1
    print(f"ok: `{Path(cmd[0]).name}` changed nothing")
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
