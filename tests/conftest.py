from pathlib import Path

import pytest

import vggspec
from vggspec import folders

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
PAPER_CONFIGS = ("A", "A-LRN", "B", "C", "D", "E")


@pytest.fixture(scope="session")
def paper_specs() -> dict[str, vggspec.Spec]:
    return {name: vggspec.load(SPECS / f"{name}.vgg") for name in PAPER_CONFIGS}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    """train/{cat,dog}: JPEGs of several shapes, one large enough for a 1/8 draft at S=40."""
    from .images import make_split  # numpy and PIL come with the torch extras, which the other tests do without

    root = tmp_path_factory.mktemp("images")
    sizes = [(120, 90), (90, 120), (64, 48), (400, 300), (333, 250), (160, 160)]
    make_split(root, "train", {"cat": sizes, "dog": sizes[::-1]})
    make_split(root, "val", {"cat": sizes[:2], "dog": sizes[:2]})
    return root


@pytest.fixture(scope="module")
def folder(dataset_dir) -> folders.ImageFolder:
    return folders.scan(dataset_dir, "train")
