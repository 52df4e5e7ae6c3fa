"Packaging: the library runs without nbdev/fastcore, dependencies are declared, the repo ignores run outputs."
import configparser, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["mlnb", "mlnb.core", "mlnb.config", "mlnb.steps", "mlnb.data", "mlnb.validate", "mlnb.features", "mlnb.train",
           "mlnb.tune", "mlnb.evaluate", "mlnb.registry", "mlnb.serve", "mlnb.tracking", "mlnb.runner", "mlnb.cli", "mlnb.store", "mlnb.security", "mlnb.monitor"]

def test_library_imports_without_dev_tools():
    blocker = ("import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('nbdev', 'fastcore', 'execnb', 'ghapi'): raise ImportError(f'blocked: {name}')\n"
               "sys.meta_path.insert(0, Block())\n" + "".join(f"import {m}\n" for m in MODULES))
    res = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr

def test_every_module_is_exported():
    assert sorted(p.stem for p in (ROOT/"mlnb").glob("*.py") if p.stem not in ("__init__", "_modidx")) == sorted(m.split(".")[1] for m in MODULES[1:])

def test_dependencies_declared():
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(ROOT/"settings.ini")
    s = cfg["DEFAULT"]
    runtime, dev = s["requirements"].split(), s["dev_requirements"].split()
    names = {r.split("[")[0].split(">")[0].split("=")[0].split("<")[0] for r in runtime}
    assert {"polars", "pyarrow", "lightgbm", "wandb", "shap", "fastapi", "uvicorn", "papermill", "ipykernel", "matplotlib", "pydantic", "pyyaml", "optuna"} <= names
    assert not any(r.startswith(("nbdev", "fastcore", "execnb")) for r in runtime), "nbdev belongs in the dev extra only"
    assert {"nbdev==2.4.14", "fastcore>=1.12.27,<2", "execnb<0.2", "ghapi<2"} <= set(dev)
    assert s["allowed_cell_metadata_keys"] == "tags" and "slow" in s["tst_flags"].split() and s["recursive"] == "True"

def test_pip_check():
    res = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout

@pytest.mark.parametrize("folder", ["runs", "data", "registry", "wandb", "_docs", ".venv"])
def test_run_outputs_are_ignored(folder):
    res = subprocess.run(["git", "check-ignore", "-q", f"{folder}/x"], cwd=ROOT)
    assert res.returncode == 0, f"{folder}/ is not ignored by .gitignore"

def test_readme_is_generated_from_index():
    sys.path.insert(0, str(ROOT/"tools"))
    from readme import render
    assert (ROOT/"README.md").read_text(encoding="utf-8") == render(ROOT/"nbs"/"index.ipynb"), "README.md is stale: run `make readme`"
    text = (ROOT/"README.md").read_text()
    assert text.index("make run") < text.index("## ") and text.index("make test") < text.index("## ")

def test_step_notebooks_have_a_parameters_cell():
    import json
    for nb_path in sorted((ROOT/"nbs").glob("0*.ipynb")):
        cells = json.loads(nb_path.read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{nb_path.name}: needs exactly one cell tagged 'parameters'"
        assert "".join(tagged[0]["source"]).split() == ["config_path", "=", "None", "run_dir", "=", "None"], nb_path.name

def test_docs_sidebar_lists_every_notebook():
    import yaml
    side = yaml.safe_load((ROOT/"nbs"/"sidebar.yml").read_text())["website"]["sidebar"]["contents"]
    listed = [x for item in side for x in (item["contents"] if isinstance(item, dict) else [item])]
    assert sorted(listed) == sorted(p.name for p in (ROOT/"nbs").glob("*.ipynb"))
    quarto = yaml.safe_load((ROOT/"nbs"/"_quarto.yml").read_text())
    assert "sidebar.yml" in quarto["metadata-files"] and (ROOT/"nbs"/quarto["format"]["html"]["css"]).is_file()
