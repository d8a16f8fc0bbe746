"""The launch skeleton train and evaluate share: the machines from the flags, the checks made before any
process starts, and the start (in this process, when one is asked for)."""

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch", reason="needs the test extras: pip install -e '.[test]'")

from vggspec.errors import SpecError  # noqa: E402
from vggspec.run.config import EvaluateConfig, TrainConfig  # noqa: E402

from .conftest import ROOT  # noqa: E402


def test_one_process_runs_here_and_its_result_comes_back():
    from vggspec.run.launch import Launcher

    launcher = Launcher("evaluate", EvaluateConfig(checkpoints=["run"], data="images"))
    assert not launcher.machines.several
    world = launcher.processes(0, 1, set())
    assert world == 1
    assert launcher.start(lambda values: values["x"] * 2, {"x": 21}, world=world) == 42


def test_more_gpus_than_the_machine_has_is_said_with_the_command_in_the_hint():
    from vggspec.run.launch import Launcher

    gpus = torch.cuda.device_count() + 1
    for command, config in (
        ("train", TrainConfig(spec="A", data="images", gpus=gpus)),
        ("evaluate", EvaluateConfig(checkpoints=["run"], data="images", gpus=gpus)),
    ):
        launcher = Launcher(command, config)
        with pytest.raises(SpecError, match=f"--gpus {gpus} asks for more GPUs than this machine has") as info:
            with launcher.checking():  # one machine: nobody to tell, the error itself
                launcher.processes(config.gpus, config.nproc, config.model_fields_set)
        assert f"to {command} on the CPU" in info.value.hint


def test_where_is_the_data():
    from vggspec.run.launch import where_is_the_data

    assert where_is_the_data("images", "DIR/val/<class>/*") == "images"
    with pytest.raises(SpecError, match=r"where is the data\? give --data DIR \(DIR/val/<class>/\*\)"):
        where_is_the_data(None, "DIR/val/<class>/*")


def test_a_rendezvous_half_given_is_refused_before_any_check():
    from vggspec.run.launch import Launcher

    with pytest.raises(SpecError, match="--nnodes 2 needs --rdzv-endpoint HOST:PORT"):
        Launcher("evaluate", EvaluateConfig(checkpoints=["run"], data="images", nnodes="2"))


def test_the_rendezvous_flags_are_read_without_torch():
    """The command line checks --nnodes and tells the other machines before it imports torch."""
    code = (
        "import sys; from vggspec.run.config import TrainConfig; from vggspec.run.rendezvous import machines\n"
        "m = machines(TrainConfig(spec='A', data='d', nnodes='1:2', rdzv_endpoint='node1'))\n"
        "assert m.describe() == '1 to 2 machines' and m.endpoint == 'node1:29400', m\n"
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
