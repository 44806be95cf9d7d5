"""pyproject lists every package folder, so a non-editable install is complete."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir = project["package-dir"]
    folders = {}
    for name in project["packages"]:
        top = max((p for p in package_dir if name == p or name.startswith(p + ".")), key=len)
        rest = name[len(top):].lstrip(".").replace(".", "/")
        folders[name] = ROOT / package_dir[top] / rest
    for name, folder in folders.items():
        assert (folder / "__init__.py").exists(), f"{name} -> {folder} is not a package"
    on_disk = {
        init.parent.resolve()
        for top in set(package_dir.values())
        for init in (ROOT / top).rglob("__init__.py")
    }
    listed = {f.resolve() for f in folders.values()}
    missing = sorted(str(p.relative_to(ROOT)) for p in on_disk - listed)
    assert not missing, f"package folders missing from pyproject packages: {missing}"
