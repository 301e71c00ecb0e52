"""Installs gsrepro from settings.ini (nbdev 2's template setup.py imports pkg_resources, gone from
current setuptools; this one does not). Pinned versions live in requirements.txt + constraints.txt."""
from configparser import ConfigParser
from pathlib import Path

from setuptools import find_packages, setup

cfg = ConfigParser(delimiters=["="])
cfg.read(Path(__file__).parent / "settings.ini")
cfg = cfg["DEFAULT"]
reqs = [r.split("#")[0].strip() for r in (Path(__file__).parent / "requirements.txt").read_text().splitlines()]

setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    author=cfg["author"],
    license="Apache-2.0",
    python_requires=f">={cfg['min_python']}",
    packages=find_packages(include=[cfg["lib_name"], cfg["lib_name"] + ".*"]),
    include_package_data=True,
    package_data={cfg["lib_name"]: ["data/*"]},
    install_requires=[r for r in reqs if r and not r.startswith("-")],
    entry_points={"console_scripts": [cfg["console_scripts"]]},
    zip_safe=False,
)
