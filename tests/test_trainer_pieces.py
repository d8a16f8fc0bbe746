"""The trainer's pieces, each on its own: its data (the share of every step), its checkpoints (what a stopped
run leaves, a folder that cannot be written), its optimizer (when learning has begun) and its test faults.
tests/test_train.py runs them together."""

import os

import pytest

torch = pytest.importorskip("torch", reason="needs the test extras: pip install -e '.[test]'")

import vggspec  # noqa: E402
from vggspec.data import colour, folders  # noqa: E402
from vggspec.data.scales import TrainingScale  # noqa: E402
from vggspec.errors import SpecError  # noqa: E402

from .conftest import SMALL_SPEC, tiny_config  # noqa: E402


def env(rank: int = 0, world: int = 1):
    from vggspec.run.distributed import Distributed

    return Distributed(rank, world, rank, torch.device("cpu"))  # no process group: nothing is exchanged here


def training_data(shapes, tmp_path, *, rank=0, world=1, batch_size=16, micro=None):
    from vggspec.run.training_data import TrainingData

    config = tiny_config(tmp_path, shapes, text=SMALL_SPEC, batch_size=batch_size)
    spec = vggspec.parse(SMALL_SPEC)
    train, val = folders.scan(shapes, "train"), folders.scan(shapes, "val")
    stats = colour.colour_stats(train, 3, max_images=8)
    batches = config.batch_split(world, micro, rank=rank)
    return TrainingData(
        train, val, spec=spec, scale=TrainingScale(18, 20), stats=stats, config=config, env=env(rank, world),
        batches=batches,
    )  # fmt: skip


def test_every_step_takes_the_same_images_whatever_the_number_of_processes(shapes, tmp_path):
    """The data order is a function of (seed, epoch, index): three processes, in micro-batches, take between
    them exactly the images one process takes in each step, and a resumed epoch goes on with the same ones."""
    alone = training_data(shapes, tmp_path, batch_size=16)
    steps = alone.steps_per_epoch
    assert steps == 96 // 16 and len(alone.micro_batches(epoch=0)) == steps
    three = [training_data(shapes, tmp_path, rank=r, world=3, batch_size=16, micro=2) for r in range(3)]
    shares = [data.micro_batches(epoch=0) for data in three]
    for step, images in enumerate(alone.micro_batches(epoch=0)):
        taken = []
        for rank, share in enumerate(shares):
            per_step = three[rank].batches.per_step
            taken += [i for micro in share[step * per_step : (step + 1) * per_step] for i in micro]
        assert sorted(taken) == sorted(images), step
    assert alone.micro_batches(epoch=0, from_step=2) == alone.micro_batches(epoch=0)[2:]
    assert alone.micro_batches(epoch=1) != alone.micro_batches(epoch=0)
    every = sorted(i for data in three for micro in data.validation().batch_sampler for i in micro)
    assert every == list(range(len(alone.val_set)))  # each validation image once


def test_the_data_checks_its_classes_and_a_batch_it_can_fill(shapes, tmp_path):
    from vggspec.run.training_data import scan, steps_per_epoch

    config = tiny_config(tmp_path, shapes, text=SMALL_SPEC.replace("FC-3", "FC-5"))
    with pytest.raises(SpecError, match="ends in FC-5 \\(5 classes\\) but .* has 3 class folders") as info:
        scan(config, vggspec.load(config.spec), env())
    assert info.value.line is not None and "FC-3" in info.value.hint
    train = folders.scan(shapes, "train")
    assert steps_per_epoch(train, 16) == 6
    with pytest.raises(SpecError, match="has 96 images, fewer than one batch of 128"):
        steps_per_epoch(train, 128)


def test_what_a_stopped_run_leaves_is_said(tmp_path, shapes):
    from vggspec.run.checkpointing import kept, position
    from vggspec.run.train import train

    assert kept(tmp_path) == "no checkpoint had been saved yet (--checkpoint-every N saves within an epoch)"
    run = train(tiny_config(tmp_path, shapes, text=SMALL_SPEC, epochs=1))
    assert kept(run) == f"the last good checkpoint is kept ({run / 'last.pt'}: {position(1, 0)})"
    assert position(1, 0) == "epoch 2, step 0"


def test_a_new_run_refuses_a_folder_that_holds_one_and_a_resumed_one_checks_its_spec(tmp_path, shapes):
    from vggspec.run.checkpointing import Checkpoints
    from vggspec.run.runlog import RunLog
    from vggspec.run.train import train

    config = tiny_config(tmp_path, shapes, text=SMALL_SPEC, epochs=1)
    run = train(config)
    checkpoints = Checkpoints(run, env(), RunLog(run, enabled=False, quiet=True))
    with pytest.raises(SpecError, match="already holds a run \\(last.pt\\)"):
        checkpoints.resumable(config, vggspec.parse(SMALL_SPEC))
    resumed = config.model_copy(update={"resume": True})
    assert checkpoints.resumable(resumed, vggspec.parse(SMALL_SPEC))["epoch"] == 1
    with pytest.raises(SpecError, match="was trained with another spec"):
        checkpoints.resumable(resumed, vggspec.parse(SMALL_SPEC.replace("FC-32", "FC-64")))


def test_a_folder_that_cannot_be_written_is_one_line(tmp_path):
    from vggspec.run.checkpointing import writing

    for saved_before in (False, True):  # the hint speaks of --resume only where a checkpoint was saved
        if saved_before:
            (tmp_path / "last.pt").write_bytes(b"")
        with pytest.raises(SpecError, match=f"cannot write {tmp_path / 'last.pt'}: No space left on device") as info:
            with writing(tmp_path):
                raise OSError(28, "No space left on device", str(tmp_path / "last.pt"))
        assert ("--resume" in info.value.hint) == saved_before
        assert ("nothing was saved yet" in info.value.hint) != saved_before
    with pytest.raises(ValueError, match="not a file"):  # not a failure to write: not ours to say
        with writing(tmp_path):
            raise ValueError("not a file")


def test_learning_has_begun_below_chance():
    from vggspec.run.optimizer import has_begun_to_learn

    chance_loss = torch.log(torch.tensor(10.0)).item()
    assert not has_begun_to_learn(chance_loss, 0.9, classes=10)
    assert has_begun_to_learn(0.85 * chance_loss, 0.9, classes=10)  # the loss fell
    assert has_begun_to_learn(chance_loss, 0.6, classes=10)  # the error fell: below 0.7 × 0.9
    assert has_begun_to_learn(5.0, 1.0, classes=1)  # one class: nothing to wait for


def test_the_optimizer_state_starts_from_the_settings(tmp_path, shapes):
    from vggspec.run.optimizer import TrainingState

    config = tiny_config(tmp_path, shapes, text=SMALL_SPEC, lr=0.02, lr_drops=2, amp="fp16")
    model = vggspec.build(vggspec.parse(SMALL_SPEC))
    state = TrainingState.start(model, config, [], torch.device("cpu"))
    assert state.lr == 0.02 and state.scaler.is_enabled()
    assert state.scheduler.min_lrs[0] == pytest.approx(0.02 * 0.1**2 * (1 - 1e-6))
    assert (state.epoch, state.step, state.history) == (0, 0, [])


def test_test_faults_are_read_for_their_process(monkeypatch):
    from vggspec.run.faults import TEST_FAULT_AT, planned_faults

    monkeypatch.delenv("VGGSPEC_RESTART_COUNT", raising=False)
    monkeypatch.setenv(TEST_FAULT_AT, "1:5,0:9:2:oom,1:3:0:term")
    assert planned_faults(0) == {9: "oom"}
    assert planned_faults(1) == {5: "kill"}  # STARTS 0: in no start
    monkeypatch.setenv("VGGSPEC_RESTART_COUNT", "1")
    assert planned_faults(0) == {9: "oom"} and planned_faults(1) == {}
    monkeypatch.setenv(TEST_FAULT_AT, "0:1:1:explode")
    with pytest.raises(ValueError, match="'explode' is not one of kill, oom, term"):
        planned_faults(0)
    monkeypatch.delenv(TEST_FAULT_AT)
    assert planned_faults(0) == {} and TEST_FAULT_AT not in os.environ


@pytest.mark.parametrize(
    ("drops", "accuracies", "ends"),
    [  # patience 1: a plateau is 2 epochs in a row without a better accuracy, the count begun again after each
        (2, [0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7], 9),  # drops after epochs 4 and 6; better at 7; no drop left
        (2, [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], 7),  # plateaus at 3 and 5 dropped the lr; at 7 none is left
        (0, [0.5, 0.6, 0.6, 0.6], 4),  # no drop to make: the first plateau ends the run
        (1, [0.5, 0.6, 0.7, 0.8, 0.9], None),  # better every epoch: never
    ],
)
def test_the_schedule_says_when_it_finds_a_plateau_with_no_drop_left(tmp_path, shapes, drops, accuracies, ends):
    """As ReduceLROnPlateau counts: with lr_drops drops made, the epoch where it would lower the lr once more."""
    from vggspec.run.optimizer import TrainingState

    config = tiny_config(tmp_path, shapes, text=SMALL_SPEC, lr=0.05, lr_patience=1, lr_drops=drops)
    state = TrainingState.start(vggspec.build(vggspec.parse(SMALL_SPEC)), config, [], torch.device("cpu"))
    done = [epoch for epoch, accuracy in enumerate(accuracies, 1) if state.step_schedule(accuracy)]
    assert done == ([ends] if ends else [])
    if ends:
        assert state.lr == pytest.approx(0.05 * 0.1**drops, rel=1e-5)  # every drop made, none below the floor


CURVES_HISTORY = [
    {"epoch": e, "train_loss": 1.1 - 0.1 * e, "train_top1_err": 0.6 - 0.05 * e, "val_loss": 1.0 - 0.08 * e,
     "val_top1_err": err, "val_top5_err": err / 4, "lr": 0.01 if e < 4 else 0.001}
    for e, err in zip(range(1, 7), [0.6, 0.4, 0.3, 0.25, 0.1, 0.2])
]  # fmt: skip


def test_the_curves_show_loss_and_error_for_training_and_validation_and_top5_where_it_can_be_other_than_0(
    tmp_path, monkeypatch
):
    """Three panels: loss (training, validation), error (the same, top-1; validation's top-5 with more than 5
    classes; the best epoch marked) and the learning rate on a log axis, a tick at each rate. A run resumed from
    before the validation loss was recorded draws what it has."""
    from matplotlib.figure import Figure

    from vggspec.run.runlog import RunLog

    drawn, real_savefig = [], Figure.savefig

    def keep(fig, *args, **kwargs):
        drawn.append(fig)
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    for top5 in (False, True):
        log = RunLog(tmp_path, enabled=False, quiet=False)
        log.top5 = top5
        log._write_curves(CURVES_HISTORY)
        loss, error, lr = drawn[-1].axes
        labels = [[line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
                  for ax in (loss, error)]  # fmt: skip
        assert labels[0] == ["training", "validation"]
        assert labels[1] == ["training top-1", "validation top-1", *(["validation top-5"] if top5 else []),
                             "best: epoch 5, 10.00%"]  # fmt: skip
        assert lr.get_yscale() == "log" and list(lr.get_yticks()) == [0.001, 0.01]
        assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG\r\n")
    newer = ("val_loss", "train_top1_err")
    older = [{key: value for key, value in r.items() if key not in newer} for r in CURVES_HISTORY]
    log._write_curves(older)  # drawn, without the lines it has no numbers for
    assert len(drawn) == 3


def test_the_curves_never_touch_pyplot_nor_the_backend(tmp_path):
    """pyplot is global state (the backend, the figures): the trainer draws on a Figure of its own."""
    import subprocess
    import sys

    code = (
        "import sys, matplotlib\n"
        "matplotlib.use('svg')\n"
        "from pathlib import Path\n"
        "from vggspec.run.runlog import RunLog\n"
        "from tests.test_trainer_pieces import CURVES_HISTORY\n"
        f"RunLog(Path({str(tmp_path)!r}), enabled=False, quiet=False)._write_curves(CURVES_HISTORY)\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    from .conftest import ROOT

    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "curves.png").is_file()
