"Shared by the benchmarks: save results as JSON and rewrite their section of benchmarks/README.md."
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def save_report(name: str, results, text: str, readme: bool = True):
    "Write benchmarks/results/<name>.json and the README text between `<!-- name:start -->` and `<!-- name:end -->`."
    (ROOT/"benchmarks"/"results").mkdir(exist_ok=True)
    (ROOT/"benchmarks"/"results"/f"{name}.json").write_text(json.dumps(results, indent=2))
    if readme:
        path, start, end = ROOT/"benchmarks"/"README.md", f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        doc = path.read_text()
        path.write_text(doc[:doc.index(start) + len(start)] + "\n" + text + doc[doc.index(end):])
    print(text)
