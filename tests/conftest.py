from pathlib import Path

import pytest

import vggspec

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
PAPER_CONFIGS = ("A", "A-LRN", "B", "C", "D", "E")


@pytest.fixture(scope="session")
def paper_specs() -> dict[str, vggspec.Spec]:
    return {name: vggspec.load(SPECS / f"{name}.vgg") for name in PAPER_CONFIGS}
