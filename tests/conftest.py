from pathlib import Path

import pytest

import vggspec

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
PAPER_CONFIGS = ("A", "A-LRN", "B", "C", "D", "E")


@pytest.fixture(scope="session")
def paper_specs() -> dict[str, vggspec.Spec]:
    return {name: vggspec.load(SPECS / f"{name}.vgg") for name in PAPER_CONFIGS}


@pytest.fixture(scope="session", autouse=True)
def vggspec_messages():
    """vggspec's notes on stderr, as the vggspec program prints them: tests that call train() or
    evaluate() in this process read them there."""
    from vggspec.logs import show_messages

    show_messages()
