"""Write README.md from nbs/index.ipynb (markdown as is, code with its real output).

nbdev's own `nbdev_readme` renders through Quarto; this does the same job without it, so the
README can be regenerated and checked (`make check`) anywhere. Cells marked `#| hide` are left out.
"""
import json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r"^\s*#\|")

def cell_text(cell) -> str:
    src = "".join(cell["source"])
    lines = src.splitlines()
    if any(re.match(r"^\s*#\|\s*hide\s*$", l) for l in lines): return ""
    if cell["cell_type"] == "markdown": return src.strip() + "\n"
    code = "\n".join(l for l in lines if not DIRECTIVE.match(l)).strip()
    parts = [f"```python\n{code}\n```\n"] if code else []
    for out in cell.get("outputs", []):
        text = out.get("text") or out.get("data", {}).get("text/markdown") or out.get("data", {}).get("text/plain")
        if text:
            text = "".join(text).rstrip()
            parts.append(text + "\n" if "text/markdown" in out.get("data", {}) else f"```\n{text}\n```\n")
    return "\n".join(parts)

def render(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    body = "\n".join(t for t in (cell_text(c) for c in nb["cells"]) if t)
    return f"<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, then `make readme`. -->\n\n{body}"

if __name__ == "__main__":
    (ROOT/"README.md").write_text(render(ROOT/"nbs"/"index.ipynb"), encoding="utf-8")
