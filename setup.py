"Packaging for mlnb: every setting comes from settings.ini (nbdev 2's layout)."
from configparser import ConfigParser
from pathlib import Path
import shlex
from setuptools import find_packages, setup

cfg = ConfigParser(delimiters=["="])
cfg.read(Path(__file__).parent/"settings.ini", encoding="utf-8")
s = cfg["DEFAULT"]
def words(key): return shlex.split(s.get(key, ""))  # requirement lists are space separated

readme = Path(__file__).parent/"README.md"
setup(
    name=s["lib_name"], version=s["version"], description=s["description"],
    long_description=readme.read_text(encoding="utf-8") if readme.exists() else s["description"],
    long_description_content_type="text/markdown",
    author=s["author"], author_email=s["author_email"], license="Apache-2.0",
    url=s["git_url"], keywords=s["keywords"].split(), python_requires=f">={s['min_python']}",
    packages=find_packages(include=[s["lib_path"], f"{s['lib_path']}.*"]),
    install_requires=words("requirements"),
    extras_require={"dev": words("dev_requirements")},
    entry_points={"console_scripts": words("console_scripts"),
                  "nbdev": [f"{s['lib_path']}={s['lib_path']}._modidx:d"]},
    zip_safe=False,
)
