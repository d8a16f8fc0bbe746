"""The wheels vggspec builds: the specs, the licence and the typing marker inside a wheel, the
version written once, nothing of vggspec's in an editable one."""

import re
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

import vggspec

pytest.importorskip("hatchling", reason="needs the test extras: pip install -e '.[test]'")

from hatchling.builders.wheel import WheelBuilder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def contents(tmp_path: Path, version: str) -> dict[str, bytes]:
    (wheel,) = WheelBuilder(str(ROOT)).build(directory=str(tmp_path / version), versions=[version])
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def names(tmp_path: Path, version: str) -> list[str]:
    return list(contents(tmp_path, version))


def dist_info(files: dict[str, bytes], name: str) -> str:
    """The text of ``name`` in the wheel's .dist-info folder (METADATA, entry_points.txt, ...)."""
    (text,) = [text for path, text in files.items() if path.endswith(f".dist-info/{name}")]
    return text.decode()


def test_a_wheel_carries_the_package_the_specs_and_the_program(tmp_path):
    files = contents(tmp_path, "standard")
    shipped = {"vggspec/cli/__init__.py", "vggspec/spec/grammar.lark", "vggspec/_specs/D.vgg"}
    assert shipped | {"vggspec/_specs/small/A-narrow-32.vgg", "vggspec/run/train.py"} <= set(files)
    # __main__.main: the command line's imports under a Ctrl-C guard, then cli.run (the quick exit)
    assert "vggspec = vggspec.__main__:main" in dist_info(files, "entry_points.txt")
    assert not [name for name in files if name.endswith("measured.py")]  # the tests' oracle stays in tools/


def test_a_wheel_says_it_is_typed_names_its_licence_and_carries_it(tmp_path):
    """PEP 561's marker, so type checkers read vggspec's hints; PEP 639's licence fields and file."""
    files = contents(tmp_path, "standard")
    assert "vggspec/py.typed" in files
    assert dist_info(files, "licenses/LICENSE") == (ROOT / "LICENSE").read_text()
    metadata = HeaderParser().parsestr(dist_info(files, "METADATA"))
    assert metadata["License-Expression"] == "MIT" and metadata.get_all("License-File") == ["LICENSE"]
    classifiers = metadata.get_all("Classifier")
    assert "Typing :: Typed" in classifiers and "Programming Language :: Python :: 3.13" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # deprecated beside License-Expression


def test_the_version_is_written_once_in_the_package(tmp_path):
    """pyproject.toml reads it from vggspec/__init__.py: the wheel's version is vggspec.__version__."""
    files = contents(tmp_path, "standard")
    assert HeaderParser().parsestr(dist_info(files, "METADATA"))["Version"] == vggspec.__version__
    assert any(name.startswith(f"vggspec-{vggspec.__version__}.dist-info/") for name in files)
    assert "\nversion =" not in (ROOT / "pyproject.toml").read_text()


def test_an_editable_wheel_adds_no_vggspec_folder(tmp_path):
    """A vggspec/ folder in site-packages without __init__.py would be a namespace package, found
    by `import vggspec` whenever the checkout is not on the path: "No module named 'vggspec.cli'"."""
    files = names(tmp_path, "editable")
    assert not [f for f in files if f.startswith("vggspec/")], files
    assert any(f.endswith(".pth") for f in files)  # the checkout, put on the path


def test_fvcore_is_for_the_tests_not_for_users(tmp_path):
    """Only the cross-checks and tools/bench_analyze.py count with fvcore: `[torch]` does not install it."""
    metadata = HeaderParser().parsestr(dist_info(contents(tmp_path, "standard"), "METADATA"))
    fvcore = [r for r in metadata.get_all("Requires-Dist") if r.startswith("fvcore")]
    assert fvcore and all("extra == 'test'" in r or "extra == 'dev'" in r for r in fvcore), fvcore
    imports = re.compile(r"^\s*(from|import) fvcore\b", re.MULTILINE)
    importing = [p for p in (ROOT / "vggspec").rglob("*.py") if imports.search(p.read_text())]
    assert not importing, importing


def test_torch_is_bounded_below_only_so_a_newer_torch_is_kept(tmp_path):
    """`pip install 'vggspec[torch]'` next to a newer torch (2.15) must not downgrade it: a library states lower
    bounds; the versions the tests ran with are pinned in constraints.txt, which the test line installs with."""
    metadata = HeaderParser().parsestr(dist_info(contents(tmp_path, "standard"), "METADATA"))
    requires = metadata.get_all("Requires-Dist")
    for package in ("torch", "torchvision"):
        requirements = [r.split(";")[0] for r in requires if re.match(rf"{package}[<>=!~ ]", r)]
        assert requirements and all(">=" in r and "<" not in r.replace(">=", "") for r in requirements), requirements
    pinned = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^torch==\d", pinned, re.MULTILINE) and "-c constraints.txt" in (ROOT / ".ci/run").read_text()
