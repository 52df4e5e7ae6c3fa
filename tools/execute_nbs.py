"""Re-execute notebooks in place so the docs show real output (then `nbdev_clean`).

    python tools/execute_nbs.py                 # every notebook in nbs/
    python tools/execute_nbs.py 03_train 07_deploy

Each runs in a fresh kernel from nbs/, the way nbdev_test runs them; step notebooks run in demo mode.
"""
import sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient
from mlnb.runner import ipc_kernel

NBS = Path(__file__).resolve().parents[1]/"nbs"

def main(names: list[str]) -> int:
    paths = [NBS/f"{n.removesuffix('.ipynb')}.ipynb" for n in names] or sorted(NBS.glob("[!_]*.ipynb"))
    for path in paths:
        t = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        with ipc_kernel(NBS) as km:   # Unix sockets: no TCP-without-encryption warning in the outputs
            NotebookClient(nb, km=km, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NBS)}}).execute()
        nbformat.write(nb, path)
        print(f"{path.name}: {time.perf_counter() - t:.1f}s", flush=True)
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
