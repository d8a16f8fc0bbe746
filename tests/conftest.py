import sys
from pathlib import Path

import pytest

import vggspec
from vggspec.data import folders
from vggspec.run.config import TrainConfig  # pydantic only: no torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))  # the test oracle, tools/measured.py, which the wheel does not ship
SPECS = ROOT / "specs"
PAPER_CONFIGS = ("A", "A-LRN", "B", "C", "D", "E")

# A narrow net for 16×16 inputs and 3 classes: it trains in seconds on a CPU.
TINY_SPEC = "input: 16x16 RGB\nconv3-8 [bn]\nmaxpool\nconv3-16 [bn]\nmaxpool\nFC-32\nFC-3\nsoft-max\n"
# Without batch norm and dropout: N processes train the weights one process trains (to float rounding).
SMALL_SPEC = "input: 16x16 RGB\nconv3-8\nmaxpool\nconv3-16\nmaxpool\nFC-32 [dropout=0]\nFC-3\nsoft-max\n"


@pytest.fixture(scope="session")
def paper_specs() -> dict[str, vggspec.Spec]:
    return {name: vggspec.load(SPECS / f"{name}.vgg") for name in PAPER_CONFIGS}


@pytest.fixture(scope="session", autouse=True)
def vggspec_messages():
    """vggspec's notes on stderr, as the vggspec program prints them: tests that call train() or
    evaluate() in this process read them there."""
    from vggspec.logs import show_messages

    show_messages()


@pytest.fixture(scope="session", autouse=True)
def probe_cache(tmp_path_factory):
    """The measured dtype decisions (``dtype="auto"``) go to a folder of the tests', not the user's cache."""
    import os

    before = os.environ.get("VGGSPEC_CACHE")
    os.environ["VGGSPEC_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("VGGSPEC_CACHE", None)
    else:
        os.environ["VGGSPEC_CACHE"] = before


def spec_file(folder: Path, text: str, name: str = "net.vgg") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return str(path)


def tiny_config(
    folder: Path, data: str | Path, text: str = TINY_SPEC, *, name: str = "net.vgg", **overrides
) -> TrainConfig:
    """The recipe that trains a tiny network in seconds: FOLDER/NAME (``text``) on ``data``, the run in FOLDER/run."""
    values = dict(
        spec=spec_file(folder, text, name),
        data=str(data),
        out=str(folder / "run"),
        epochs=2,
        batch_size=16,
        lr=0.05,
        init="kaiming",
        normalise="mean",  # the paper's inputs, as the tests were written for (--normalise auto: tests of its own)
        workers=0,
        stats_images=40,
        progress=False,
    )
    values.update(overrides)
    return TrainConfig(**values)


def cli_args(cfg: TrainConfig) -> list[str]:
    """``train SPEC --flag value ...``: the command line that gives ``cfg`` (defaults left out)."""
    args = ["train", cfg.spec]
    for key, value in cfg.model_dump().items():
        if key == "spec" or value is None or value == TrainConfig.model_fields[key].default:
            continue
        flag = "--" + key.replace("_", "-")
        args += (
            [flag if value is True else f"--no-{key.replace('_', '-')}"]
            if isinstance(value, bool)
            else [flag, str(value)]
        )
    return args


def final_weights(run: Path) -> dict:
    import torch

    return torch.load(run / "last.pt", weights_only=True)["state_dict"]


def assert_same_weights(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> Path:
    """Generated shapes to train on: 3 classes, 32 training and 12 validation images each, 20×20."""
    pytest.importorskip("PIL", reason="needs the test extras: pip install -e '.[test]'")
    from vggspec.data.samples import image_folder

    return image_folder(tmp_path_factory.mktemp("shapes"), classes=3, train=32, val=12, size=20)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny network trained for 4 epochs at S ∈ [18, 24] (seconds), and its data: best.pt and the folder
    (3 classes of 24 training and 10 validation images, 28×28). The network is called "shapes"."""
    pytest.importorskip("torch", reason="needs the test extras: pip install -e '.[test]'")
    from vggspec.data.samples import image_folder
    from vggspec.run.train import train

    root = tmp_path_factory.mktemp("trained")
    data = image_folder(root / "data", classes=3, train=24, val=10, size=28)
    run = train(tiny_config(root, data, name="shapes.vgg", epochs=4, batch_size=12, stats_images=30, scale="18:24"))
    return run / "best.pt", data


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
