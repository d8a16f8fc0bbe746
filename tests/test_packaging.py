"""The wheels vggspec builds: the specs inside a wheel, nothing of vggspec's in an editable one."""

import zipfile
from pathlib import Path

import pytest

pytest.importorskip("hatchling", reason="needs the test extras: pip install -e '.[test]'")

from hatchling.builders.wheel import WheelBuilder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def contents(tmp_path: Path, version: str) -> dict[str, bytes]:
    (wheel,) = WheelBuilder(str(ROOT)).build(directory=str(tmp_path / version), versions=[version])
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def names(tmp_path: Path, version: str) -> list[str]:
    return list(contents(tmp_path, version))


def test_a_wheel_carries_the_package_the_specs_and_the_program(tmp_path):
    files = contents(tmp_path, "standard")
    assert {"vggspec/cli.py", "vggspec/_specs/D.vgg", "vggspec/_specs/small/A-narrow-32.vgg"} <= set(files)
    (entry_points,) = [text for name, text in files.items() if name.endswith(".dist-info/entry_points.txt")]
    assert "vggspec = vggspec.cli:run" in entry_points.decode()  # run(), not main(): the quick exit


def test_an_editable_wheel_adds_no_vggspec_folder(tmp_path):
    """A vggspec/ folder in site-packages without __init__.py would be a namespace package, found
    by `import vggspec` whenever the checkout is not on the path: "No module named 'vggspec.cli'"."""
    files = names(tmp_path, "editable")
    assert not [f for f in files if f.startswith("vggspec/")], files
    assert any(f.endswith(".pth") for f in files)  # the checkout, put on the path
