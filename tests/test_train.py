"""The trainer on small generated data: it learns, survives SIGKILL and SIGTERM bit for bit, splits
work over processes without changing the result, and reports what goes wrong."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs the test extras: pip install -e '.[test]'")

import vggspec  # noqa: E402
from vggspec.run.config import TrainConfig  # noqa: E402

from .conftest import (  # noqa: E402
    ROOT,
    SMALL_SPEC,
    TINY_SPEC,
    assert_same_weights,
    cli_args,
    final_weights,
    spec_file,
    tiny_config,
)

# Narrow nets for 16×16 inputs: seconds on a CPU (TINY_SPEC and SMALL_SPEC are the conftest's).
# Three stages, so that A's conv1_1, conv2_1, conv3_1, conv3_2 exist (Section 3.1's transfer).
TINY_A = "input: 16x16 RGB\nconv3-4\nmaxpool\nconv3-8\nmaxpool\nconv3-8 ×2\nmaxpool\nFC-16 ×2\nFC-3\n"
TINY_D = "input: 16x16 RGB\nconv3-4 ×2\nmaxpool\nconv3-8 ×2\nmaxpool\nconv3-8 ×3\nmaxpool\nFC-16 ×2\nFC-3\n"


def cli(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vggspec", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def wait_for(path, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)


# -- it learns -------------------------------------------------------------------------


def test_a_narrow_network_learns_shapes(tmp_path, shapes, capfd):
    cfg = tiny_config(tmp_path, shapes, epochs=8, lr=0.05)
    from vggspec.run.train import train

    run = train(cfg)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == list(range(1, 9))
    assert {"epoch", "train_loss", "train_top1_err", "val_loss", "val_top1_err", "val_top5_err", "lr",
            "images_per_s"} <= set(metrics[0])  # fmt: skip
    best = min(m["val_top1_err"] for m in metrics)
    assert best < 0.25, metrics  # chance is 2/3
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert all(m["val_top5_err"] == 0 for m in metrics)  # 3 classes: always in the top 5
    for name in ("last.pt", "best.pt", "config.json", "colour_stats.json", "curves.png"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((run / "config.json").read_text())["batch_size"] == 16
    model = vggspec.load_model(run / "best.pt")
    assert model.spec == vggspec.parse(TINY_SPEC)
    err = capfd.readouterr().err
    assert "best epoch" in err and "val top-1 error" in err and str(run) in err


def test_random_weights_whose_class_scores_start_far_from_1_get_a_word_of_advice():
    """From the analysis' estimate of the fresh network's class scores: the paper's "10⁻² variance"
    read as std 0.1 explodes them (A: ~1e8), the paper's std 0.01 fades them in D (~4e-6), not in A
    (~1e-3); auto never starts where a note is due."""
    from vggspec.run.train import init_advice

    a, d = vggspec.load("A"), vggspec.load("D")
    for spec in (a, d):
        advice = init_advice(spec, "normal:0.1")
        assert advice is not None and "likely to diverge" in advice and "Other initialisations: --init paper" in advice
        assert ("--init-from RUN_A" in advice) == (spec is d)  # only deeper nets began from A
    assert "likely to stall" in init_advice(d, "paper") and "start at about 4e-06" in init_advice(d, "paper")
    assert "start slowly" in init_advice(a, "paper")  # the paper trained A from there, over 74 epochs
    for init in ("glorot", "kaiming", "auto"):
        assert init_advice(d, init) is None
    # From Glorot's start on the paper's inputs, A and D diverged at the paper's 1e-2 where D trained at 1e-3;
    # the narrow specs train. On inputs divided by their std (auto's), D trained at 1e-2: no note.
    assert "--lr 0.001, or start as the paper did" in init_advice(d, "auto", lr=1e-2)
    assert init_advice(d, "auto", 1.0, lr=1e-2, standardised=True) is None
    assert init_advice(d, "auto", lr=1e-3) is None
    assert init_advice(vggspec.load("small/D-narrow-32-bn"), "auto", lr=1e-2) is None


# -- never lose work ---------------------------------------------------------------------


@pytest.mark.parametrize("nproc", [1, 2])
def test_kill_9_mid_epoch_and_resume_equals_an_uninterrupted_run(tmp_path, shapes, nproc):
    """SIGKILL to every process (a machine going down); with two, each rank's RNG and the data
    position must come back too. Batch norm: its statistics are per process under DDP."""
    epochs = 6 if nproc == 1 else 2
    common = dict(epochs=epochs, deterministic=True, checkpoint_every=1, text=TINY_SPEC, nproc=nproc)
    reference = tiny_config(tmp_path / "ref", shapes, **common)
    subprocess.run([sys.executable, "-m", "vggspec", *cli_args(reference)], cwd=ROOT, check=True, capture_output=True)

    interrupted = tiny_config(tmp_path / "killed", shapes, **common)
    process = cli(*cli_args(interrupted), start_new_session=True)  # its own process group, workers included
    run = tmp_path / "killed" / "run"
    wait_for(run / "last.pt", process)  # the first checkpoint: step 1 of epoch 1, a run barely begun
    time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] < epochs

    # What the interrupted message says: the run and --resume; the spec and the rest are the run's own.
    Path(interrupted.spec).unlink()  # RUN/spec.vgg is the spec now
    resume = ["train", "--out", interrupted.out, "--resume", "--no-progress"]
    resumed = subprocess.run([sys.executable, "-m", "vggspec", *resume], cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert ("starting 2 processes on this machine" in resumed.stderr) == (nproc == 2)
    assert_same_weights(final_weights(run), final_weights(tmp_path / "ref" / "run"))
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in metrics] == list(range(1, epochs + 1))
    # The epoch resumed mid-way averages all its steps, those before the kill too.
    expected = [json.loads(line) for line in (tmp_path / "ref" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in metrics] == pytest.approx([r["train_loss"] for r in expected], rel=1e-9)
    assert [r["train_top1_err"] for r in metrics] == [r["train_top1_err"] for r in expected]  # its steps' too


def test_resume_alone_continues_the_run_as_it_was_started(tmp_path, shapes, capfd):
    """The interrupted message says `--out RUN --resume`: the run's settings (batch 16, lr 0.05,
    kaiming, ... here) must come from its checkpoint, not from the defaults."""
    from vggspec.run.train import train

    reference = train(tiny_config(tmp_path / "ref", shapes, epochs=2, deterministic=True))
    first = tiny_config(tmp_path / "res", shapes, epochs=1, deterministic=True)
    run = train(first)
    assert "done: 1 epoch in" in capfd.readouterr().err
    bare = dict(data=first.data, out=first.out, resume=True, progress=False)  # the spec: RUN/spec.vgg
    train(TrainConfig(**bare, epochs=2))  # a longer run: --epochs may change
    assert_same_weights(final_weights(run), final_weights(reference))
    err = capfd.readouterr().err
    assert f"note: resuming {run} with epochs 1 → 2" in err
    assert "done: epoch 2 (2 in all) in" in err  # this session's epoch, and the run's total
    assert json.loads((run / "config.json").read_text())["batch_size"] == 16

    with pytest.raises(vggspec.SpecError, match="started with --batch-size 16, --lr 0.05: a resumed run keeps") as info:
        train(TrainConfig(**bare, epochs=3, batch_size=32, lr=0.1))
    assert f"--weights {run} --out NEW_RUN" in info.value.hint  # how to go on with a new recipe
    train(TrainConfig(**bare, lr=0.05))  # the run's own value, repeated: fine, and nothing left to train
    assert "has finished its 2 epochs: nothing to train" in capfd.readouterr().err


def test_a_run_keeps_its_spec_and_resumes_with_it_or_says_why_not(tmp_path, shapes, capfd):
    """RUN/spec.vgg is the spec as written (comments too); --resume without SPEC trains it, with
    another SPEC is refused, and without either a copy or SPEC says what to give."""
    from vggspec.run.train import train

    commented = "# the narrow test net\n" + TINY_SPEC
    first = tiny_config(tmp_path, shapes, text=commented, epochs=1)
    run = train(first)
    assert (run / "spec.vgg").read_text() == commented
    capfd.readouterr()

    with pytest.raises(vggspec.SpecError, match="another spec than") as info:
        train(tiny_config(tmp_path / "other", shapes, text=SMALL_SPEC, out=first.out, resume=True))
    assert "leave SPEC out" in str(info.value.hint) and str(run / "spec.vgg") in str(info.value.hint)
    assert (run / "spec.vgg").read_text() == commented  # a refused spec does not replace the copy
    (run / "spec.vgg").write_text(SMALL_SPEC)  # the run's own copy edited: SPEC was left out, so say that
    with pytest.raises(vggspec.SpecError, match="spec.vgg was changed after the run started") as info:
        train(TrainConfig(data=first.data, out=first.out, resume=True, progress=False))
    assert "leave SPEC out" not in str(info.value.hint) and f"--weights {run}" in str(info.value.hint)
    (run / "spec.vgg").write_text(commented)

    # Which spec, and whether there is a run, are said before anything else (the data included).
    from vggspec.cli import main

    nowhere = str(tmp_path / "nowhere")
    for args, said in (
        ([], "which spec? give SPEC"),
        (["--resume"], "--resume needs the run directory: --out RUN"),
        (["--resume", "--out", nowhere], f"nothing to resume: {nowhere}/last.pt does not exist"),
        ([first.spec, "--resume", "--out", nowhere], "nothing to resume"),
    ):
        assert main(["train", *args]) == 2
        assert said in capfd.readouterr().err
    (run / "spec.vgg").unlink()
    with pytest.raises(vggspec.SpecError, match="spec.vgg does not exist") as info:
        train(TrainConfig(data=first.data, out=first.out, resume=True, progress=False))
    assert "vggspec train SPEC --out RUN --resume" in str(info.value.hint)
    train(TrainConfig(spec=first.spec, data=first.data, out=first.out, resume=True, epochs=2, progress=False))
    assert (run / "spec.vgg").read_text() == commented  # given again: the copy is back
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_a_run_resumed_on_data_with_other_classes_is_refused(tmp_path, shapes):
    """--data may change on resume (the data moved), but not what the labels mean."""
    import shutil

    from vggspec.run.train import train

    run = train(tiny_config(tmp_path, shapes, epochs=1))
    moved = tmp_path / "moved"
    shutil.copytree(shapes, moved)
    first = sorted(p.name for p in (moved / "train").iterdir())[0]
    for split in ("train", "val"):
        (moved / split / first).rename(moved / split / "0-renamed")
    with pytest.raises(vggspec.SpecError, match=f"class 0 was '{first}', here it is '0-renamed'"):
        train(TrainConfig(data=str(moved), out=str(run), resume=True, epochs=2, progress=False))
    shutil.rmtree(moved / "train" / "0-renamed")
    shutil.copytree(shapes / "train" / first, moved / "train" / first)  # the same classes, moved: fine
    shutil.rmtree(moved / "val" / "0-renamed")
    shutil.copytree(shapes / "val" / first, moved / "val" / first)
    train(TrainConfig(data=str(moved), out=str(run), resume=True, epochs=2, progress=False))
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2


@pytest.mark.parametrize("nproc", [1, 2])
def test_sigterm_saves_and_exits_cleanly(tmp_path, shapes, nproc):
    """With 2 processes the launcher gets the signal and passes it on: still saved, said once, 130."""
    cfg = tiny_config(tmp_path, shapes, epochs=50, checkpoint_every=2, nproc=nproc)
    process = cli(*cli_args(cfg))
    run = tmp_path / "run"
    wait_for(run / "last.pt", process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted: saved" in err and f"--out {run} --resume" in err and "Traceback" not in err
    assert "error" not in err and "got signal" not in err  # neither our error nor the launcher's log
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] < 50


@pytest.mark.parametrize("nproc", [1, 2])
def test_a_diverging_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, shapes, capfd, nproc):
    from vggspec.run.train import train

    cfg = tiny_config(tmp_path, shapes, lr=1e6, epochs=3, checkpoint_every=1, text=SMALL_SPEC, nproc=nproc)
    with pytest.raises(SystemExit) as info:
        train(cfg)
    assert info.value.code == 3
    err = capfd.readouterr().err
    assert "the loss became" in err and "last good checkpoint" in err
    # A planned stop, said once: no traceback, not even the launcher's log of a worker's exit.
    assert "Traceback" not in err and "exitcode" not in err
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values())


def test_out_of_memory_saves_the_finished_steps_and_says_how_to_go_on(tmp_path, shapes, capfd, monkeypatch):
    """The device refuses memory at epoch 1's fifth step: the four finished steps are saved, the message
    names the command that goes on with half the images per pass, and that command finishes the run."""
    from vggspec.errors import out_of_memory
    from vggspec.run.train import _Trainer, train

    real_inputs, calls = _Trainer._inputs, []

    def refuse_the_fifth(self, batch):
        calls.append(1)
        if len(calls) == 5:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_inputs(self, batch)

    monkeypatch.setattr(_Trainer, "_inputs", refuse_the_fifth)
    config = tiny_config(tmp_path, shapes, epochs=2)  # 96 images, batch 16: 6 steps an epoch
    with pytest.raises(SystemExit) as info:
        train(config)
    assert info.value.code == 5
    message = capfd.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("out of memory in epoch 1, step 5: a pass of 16 images"), message
    assert "the 4 finished steps of this epoch are saved" in message and "Traceback" not in message
    assert message.endswith(f"vggspec train --out {tmp_path / 'run'} --resume --micro-batch 8")
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert (saved["epoch"], saved["step"]) == (0, 4)

    monkeypatch.setattr(_Trainer, "_inputs", real_inputs)
    run = train(TrainConfig(data=config.data, out=config.out, resume=True, micro_batch=8, workers=0, progress=False))
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2
    assert out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes"))
    assert not out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_out_of_memory_in_one_of_two_processes_stops_both_said_once_by_that_process(
    tmp_path, shapes, capfd, monkeypatch
):
    """Process 1 runs out of memory at step 4 while process 0 goes on into the step's gradient exchange: the
    run stops at once with status 5 and process 1's own message, once; process 0's lost contact is not taken
    for a death (no restart, no "lost contact"), and the checkpoint of step 2 is kept."""
    from vggspec.run.train import train

    monkeypatch.setenv("VGGSPEC_TEST_FAULT_AT", "1:3:1:oom")
    cfg = tiny_config(tmp_path, shapes, epochs=2, checkpoint_every=2, text=SMALL_SPEC, nproc=2, max_restarts=2)
    started = time.monotonic()
    with pytest.raises(SystemExit) as info:
        train(cfg)
    assert info.value.code == 5
    err = capfd.readouterr().err
    said = [line for line in err.splitlines() if "out of memory" in line]
    assert len(said) == 1 and said[0].startswith("process 1: out of memory in epoch 1, step 4: a pass of 8 images"), err
    assert said[0].endswith(f"vggspec train --out {tmp_path / 'run'} --resume --micro-batch 4"), said
    assert "Traceback" not in err and "lost contact" not in err and "again" not in err, err
    assert time.monotonic() - started < 25  # not the 30 s a process that lost the others waits for its launcher
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert (saved["epoch"], saved["step"]) == (0, 2)


def test_a_loss_diverging_before_any_checkpoint_says_so_and_suggests_only_what_was_not_tried(
    tmp_path, shapes, capfd
):
    from vggspec.run.train import train

    with pytest.raises(SystemExit) as info:
        train(tiny_config(tmp_path, shapes, lr=1e6, epochs=1, init="glorot"))
    assert info.value.code == 3
    message = capfd.readouterr().err.strip().splitlines()[-1]
    assert "no checkpoint had been saved yet" in message and "kept" not in message
    assert "a lower --lr (this run: 1e+06)" in message and "--init glorot" not in message


def test_a_run_folder_that_cannot_be_written_is_said_plainly_and_the_last_checkpoint_stays(
    tmp_path, shapes, monkeypatch
):
    import errno

    from vggspec.nn import checkpoint
    from vggspec.run.train import train

    blocker = tmp_path / "a file"
    blocker.write_text("")
    with pytest.raises(vggspec.SpecError, match="cannot write .*Not a directory") as info:
        train(tiny_config(tmp_path, shapes, out=str(blocker / "run")))
    assert "--out" in str(info.value)

    saves = []

    def disk_full_at_the_third(obj, f, *args, **kwargs):
        saves.append(obj.get("step"))
        if len(saves) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    real_save = torch.save
    monkeypatch.setattr(checkpoint.torch, "save", disk_full_at_the_third)
    with pytest.raises(vggspec.SpecError, match="No space left on device") as info:
        train(tiny_config(tmp_path, shapes, checkpoint_every=1))
    assert "--resume" in str(info.value)
    monkeypatch.undo()
    run = tmp_path / "run"
    assert torch.load(run / "last.pt", weights_only=True)["step"] == saves[1] == 2
    assert sorted(p.name for p in run.glob("*.pt*")) == ["last.pt"]  # no half-written file left


def test_a_broken_image_is_skipped_and_counted(tmp_path, shapes, capfd):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    (data / "train" / "ellipse" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (data / "train" / "rectangle" / "empty.png").write_bytes(b"")
    from vggspec.run.train import train

    run = train(tiny_config(tmp_path, data, epochs=1))
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert record["broken_images"] >= 1  # whichever of the two this epoch's batches drew
    assert "skipping an unreadable image: " in capfd.readouterr().err


@pytest.mark.parametrize("nproc", [1, 2])
def test_a_training_image_in_validation_is_said_and_validated_and_a_link_loop_costs_nothing(
    tmp_path, shapes, capfd, nproc
):
    """Said once, however many processes read the folders."""
    import os
    import shutil

    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    ellipse = data / "train" / "ellipse"
    os.link(sorted(ellipse.iterdir())[0], data / "val" / "ellipse" / "zz_also_training.png")
    (ellipse / "loop").symlink_to(".")  # os.walk counted this class ~40 times
    from vggspec.run.train import train

    capfd.readouterr()
    train(tiny_config(tmp_path, data, epochs=1, nproc=nproc))
    err = capfd.readouterr().err
    assert "96 training images in 3 classes, 37 validation images" in err  # the loop cut, the shared one kept
    assert err.count("skipped 1 linked folder already visited") == 1, err
    [shared] = [line for line in err.splitlines() if "also in the training split" in line]
    assert "1 of 37 validation images is also in the training split" in shared and "counted in validation" in shared


# -- several processes -----------------------------------------------------------------


def test_a_launched_process_skips_pythons_last_garbage_collections():
    """Each launched process exits right after its work: gc.freeze() spares it 1.2 s (as cli.run)."""
    import gc

    from vggspec.run.distributed import _guarded

    done = []
    try:
        _guarded(done.append, {"work": 1})
        assert done == [{"work": 1}] and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_training_and_evaluation_decode_without_torchvision(shapes, tmp_path):
    """Importing torchvision takes 1.5 s and its decoders are deprecated: training and evaluation decode
    with TorchCodec (its libraries loaded once by the dataset, before loader workers fork) or PIL, and
    never import torchvision, nor hide its deprecation warnings."""
    from .images import picture

    picture(60, 40, 3).save(tmp_path / "x.jpg", quality=90)
    code = (
        "import sys, warnings, vggspec.run.train, vggspec.run.evaluate\n"
        "warnings.simplefilter('error')\n"
        f"vggspec.data.datasets.TrainDataset(vggspec.data.folders.scan({str(shapes)!r}, 'train'), None, seed=0)\n"
        "assert 'torchcodec' in sys.modules, 'not loaded by the dataset'\n"
        f"vggspec.data.decoding.render({str(tmp_path / 'x.jpg')!r}, 32, 24, 0.5, 0.5, False, 3)\n"
        f"vggspec.data.decoding.rescale({str(tmp_path / 'x.jpg')!r}, 32, 3)\n"
        "assert 'torchvision' not in sys.modules, 'imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_three_processes_that_do_not_divide_the_batch_give_the_weights_of_one(tmp_path, shapes, capfd):
    """A batch of 16 over 3 processes: 6, 5 and 5 images a step, each loss divided by the mean share, so that
    DDP's mean is the mean over the batch: the weights of one process, to float rounding."""
    from vggspec.run.train import train

    one = train(tiny_config(tmp_path / "one", shapes, text=SMALL_SPEC, epochs=1, nproc=1))
    capfd.readouterr()
    three = train(tiny_config(tmp_path / "three", shapes, text=SMALL_SPEC, epochs=1, nproc=3))
    assert "(3 processes × 5–6, micro-batches of 6;" in capfd.readouterr().err
    a, b = final_weights(one), final_weights(three)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    losses = [json.loads((run / "metrics.jsonl").read_text())["train_loss"] for run in (one, three)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_two_processes_give_the_weights_of_one(tmp_path, shapes, capfd):
    from vggspec.run.train import train

    one = train(tiny_config(tmp_path / "one", shapes, text=SMALL_SPEC, epochs=1, nproc=1))
    capfd.readouterr()
    threads_before = os.environ.get("OMP_NUM_THREADS")
    # With loader workers: the launched processes fork them (they would spawn by default).
    two = train(tiny_config(tmp_path / "two", shapes, text=SMALL_SPEC, epochs=1, nproc=2, workers=1))
    # The cores are shared out, as torchrun does, rather than each process using them all.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = int(threads_before or max(1, cores // 2))
    assert f"micro-batches of 8; {threads} CPU thread{'s' if threads > 1 else ''} each)" in capfd.readouterr().err
    assert os.environ.get("OMP_NUM_THREADS") == threads_before  # the launch left no trace here
    a, b = final_weights(one), final_weights(two)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    val = [json.loads((run / "metrics.jsonl").read_text())["val_top1_err"] for run in (one, two)]
    assert val[0] == pytest.approx(val[1])  # every validation image counted once, either way


def test_the_number_of_loader_workers_does_not_change_the_run(tmp_path):
    """Same seed, 0, 1 or 2 loader workers: the same losses and weights, bit for bit. A DataLoader with no
    generator of its own draws its workers' base seed from the global RNG (the colour statistics' loader did,
    before the network's initial weights were drawn), so reading with workers started from other weights."""
    from vggspec.data.samples import image_folder
    from vggspec.run.train import train

    data = image_folder(tmp_path / "data", classes=3, train=16, val=4, size=20)
    runs = [train(tiny_config(tmp_path / f"workers{n}", data, epochs=2, workers=n)) for n in (0, 1, 2)]
    losses = [
        [(m["train_loss"], m["val_loss"]) for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
        for run in runs
    ]
    assert len(losses[0]) == 2
    assert losses[1] == losses[0] and losses[2] == losses[0]
    for run in runs[1:]:
        assert_same_weights(final_weights(runs[0]), final_weights(run))


# -- initialisation ----------------------------------------------------------------------


def test_init_from_a_trained_a(tmp_path, shapes, capfd):
    from vggspec.run.train import train

    a_run = train(tiny_config(tmp_path / "a", shapes, text=TINY_A, epochs=1))
    capfd.readouterr()
    d_cfg = tiny_config(tmp_path / "d", shapes, text=TINY_D, epochs=1, init_from=str(a_run))
    train(d_cfg)
    err = capfd.readouterr().err
    assert "Initialised net from net (Section 3.1): 7 layers copied, 3 left random" in err
    assert "conv1_2" in err and "random" in err


# -- fine-tuning -------------------------------------------------------------------------
# TINY_SPEC with another first FC: conv1_1 and conv2_1 load from the `trained` fixture, fc3 and fc4 are new.
WIDER_FC = TINY_SPEC.replace("FC-32", "FC-24")


def test_freeze_keeps_the_frozen_layers_and_their_batch_norm_statistics_bit_for_bit(tmp_path, shapes, trained, capfd):
    """--freeze pool1: conv1_1 (its batch norm's running statistics too) unchanged after an epoch, conv2_1
    trained; --new-layer-lr-mult: the new classifier's own parameter groups, at 10× the lr, in the checkpoint."""
    from vggspec.run.train import train

    best, _ = trained
    start = torch.load(best, weights_only=True)["state_dict"]
    cfg = tiny_config(tmp_path, shapes, WIDER_FC, epochs=1, weights=str(best), freeze="pool1", new_layer_lr_mult=10)
    run = train(cfg)
    frozen = [line for line in capfd.readouterr().err.splitlines() if "frozen:" in line]
    said = "frozen: conv1_1 to pool1 (240 parameters), batch norm's statistics too"  # 3·8·9 + 8, and bn's 8 + 8
    assert len(frozen) == 1 and frozen[0].endswith(said), frozen
    saved = torch.load(run / "last.pt", weights_only=True)
    after = saved["state_dict"]
    for key in [k for k in after if k.startswith("features.")]:
        assert torch.equal(after[key], start[key]) == key.startswith("features.conv1_1."), key
    assert saved["new_layers"] == ["fc3", "fc4"]
    groups = saved["optimizer"]["param_groups"]
    assert [(g["lr_mult"], g["lr"]) for g in groups] == [(1.0, 0.05), (10.0, 0.5)]
    assert [len(g["params"]) for g in groups] == [4, 4]  # conv2_1's conv and bn; fc3, fc4: conv1_1 left out

    # Resumed after its epoch, the run goes on as one run of two epochs does: the same groups, the same
    # frozen layers.
    reference = train(cfg.model_copy(update={"out": str(tmp_path / "ref"), "epochs": 2, "deterministic": True}))
    first = cfg.model_copy(update={"out": str(tmp_path / "res"), "deterministic": True})
    train(first)
    train(TrainConfig(data=first.data, out=first.out, resume=True, epochs=2, progress=False))
    assert_same_weights(final_weights(tmp_path / "res"), final_weights(reference))
    statistics = "features.conv1_1.bn.running_mean"
    assert torch.equal(final_weights(reference)[statistics], start[statistics])


def test_freezing_layers_without_batch_norm_speaks_of_no_batch_norm(tmp_path, shapes, capfd):
    from vggspec.run.train import train

    train(tiny_config(tmp_path, shapes, SMALL_SPEC, epochs=1, freeze="pool1"))
    frozen = [line for line in capfd.readouterr().err.splitlines() if "frozen:" in line]
    assert len(frozen) == 1 and frozen[0].endswith("frozen: conv1_1 to pool1 (224 parameters)"), frozen


def test_an_epoch_of_one_step_says_one_step(tmp_path, shapes, capfd):
    from vggspec.run.train import train

    train(tiny_config(tmp_path, shapes, SMALL_SPEC, epochs=1, batch_size=96))  # 3 classes × 32 images
    said = [line for line in capfd.readouterr().err.splitlines() if "per epoch" in line]
    assert len(said) == 1 and "; 1 step of 96 per epoch (" in said[0], said


def test_the_parameter_groups_come_from_the_settings():
    """One function builds the groups: frozen parameters out, new layers at their multiplier, vectors
    undecayed under --no-decay-biases; the base lr's decayed group first."""
    from vggspec.nn.compiler import build
    from vggspec.run.train import param_groups

    model = build(vggspec.parse(TINY_SPEC), init="kaiming", seed=0)
    model.features.conv1_1.requires_grad_(False)
    config = TrainConfig(data="d", lr=0.1, decay_biases=False, new_layer_lr_mult=5)
    groups = param_groups(model, config, ["fc4", "conv2_1 bn"])
    assert [(g["lr"], g["lr_mult"], g.get("weight_decay")) for g in groups] == [
        (0.1, 1.0, None), (0.1, 1.0, 0.0), (0.5, 5.0, None), (0.5, 5.0, 0.0),
    ]  # fmt: skip
    # conv2_1's and fc3's weights, then their biases; fc4's weight, then its bias and conv2_1's bn scale and shift
    assert [len(g["params"]) for g in groups] == [2, 2, 1, 3]
    assert sum(len(g["params"]) for g in param_groups(model, TrainConfig(data="d", lr=0.01), [])) == 8
    with pytest.raises(ValueError, match="the default lr is decided by the batch"):
        param_groups(model, TrainConfig(data="d"), [])


def test_fine_tuning_settings_that_cannot_work_are_one_line_and_exit_2(tmp_path, shapes, capfd):
    from vggspec.cli import main

    spec = spec_file(tmp_path, TINY_SPEC)
    base = ["train", spec, "--data", str(shapes), "--out", str(tmp_path / "run")]
    for args, said in (
        (["--freeze", "conv9_9"], "--freeze conv9_9: net has no such layer; it has features, conv1_1, pool1, "),
        (["--freeze", "conv2-1"], "did you mean conv2_1?"),
        (["--freeze", "fc4"], "--freeze fc4 leaves no layer of net to train"),
        (["--new-layer-lr-mult", "10"], "--new-layer-lr-mult 10 applies to the layers --weights leaves new"),
    ):
        assert main([*base, *args]) == 2
        err = capfd.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


# -- errors ------------------------------------------------------------------------------


def test_class_count_must_match_the_classifier(tmp_path, shapes):
    from vggspec.run.train import train

    with pytest.raises(vggspec.SpecError, match="ends in FC-5") as info:
        train(tiny_config(tmp_path, shapes, text=SMALL_SPEC.replace("FC-3", "FC-5")))
    assert "FC-3" in info.value.hint


def test_more_gpus_than_the_machine_has(tmp_path, shapes):
    from vggspec.run.train import train

    with pytest.raises(vggspec.SpecError, match="more GPUs than this machine has"):
        train(tiny_config(tmp_path, shapes, gpus=torch.cuda.device_count() + 1))
    # Synchronised batch norm is CUDA-only in torch: asking for it on CPU processes is an error,
    # before any process starts, not a crash in the first forward pass.
    with pytest.raises(vggspec.SpecError, match="--sync-bn needs --gpus") as info:
        train(tiny_config(tmp_path, shapes, nproc=2, sync_bn=True))
    assert "--nproc" in info.value.hint


def test_cli_errors_exit_2(tmp_path):
    spec = spec_file(tmp_path, SMALL_SPEC)
    result = subprocess.run([sys.executable, "-m", "vggspec", "train", spec], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "--data" in result.stderr
    for processes in ([], ["--nproc", "2"]):  # with 2, each process meets it: said once, by rank 0
        result = subprocess.run(
            [sys.executable, "-m", "vggspec", "train", spec, "--data", str(tmp_path / "nowhere"), *processes],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.count("error: the data directory") == 1 and "nowhere" in result.stderr


def test_settings_that_cannot_work_are_refused_before_anything_runs(tmp_path, shapes, capfd):
    """Infinite numbers, and weights to start from that are not there: said at once (exit 2),
    not after the colour statistics or at the first NaN."""
    from vggspec.cli import main

    spec = spec_file(tmp_path, SMALL_SPEC)
    missing = str(tmp_path / "missing.pt")
    for args, said in (
        (["--lr", "inf"], "lr: Input should be a finite number"),
        (["--weight-decay", "nan"], "weight_decay: Input should be a finite number"),
        (["--init-from", missing], f"--init-from {missing}: no such file"),
        (["--weights", missing], f"--weights {missing}: no such file"),
        (["--scale", "12"], "the training scale 12 does not fit 16×16 crops"),
    ):
        assert main(["train", spec, "--data", str(shapes), "--out", str(tmp_path / "run"), *args]) == 2
        err = capfd.readouterr().err
        assert said in err and "computing mean RGB" not in err, err
    assert not (tmp_path / "run").exists()


def test_a_config_file_sets_the_recipe_and_flags_win(tmp_path, shapes):
    """--config FILE (.toml or .json; keys spelt as the flags, with - or _); bad files said plainly."""
    from vggspec.cli import main
    from vggspec.run.config import load_config_file

    spec = spec_file(tmp_path, SMALL_SPEC)
    toml = tmp_path / "recipe.toml"
    toml.write_text('batch-size = 16\nepochs = 1\nlr = 0.05\ninit = "kaiming"\nworkers = 0\nstats_images = 40\n')
    run = tmp_path / "run"
    args = ["train", spec, "--data", str(shapes), "--out", str(run), "--config", str(toml), "--lr", "0.02"]
    assert main([*args, "--no-progress"]) == 0
    used = json.loads((run / "config.json").read_text())
    assert (used["batch_size"], used["epochs"], used["init"], used["lr"]) == (16, 1, "kaiming", 0.02)  # the flag won

    json_file = tmp_path / "recipe.json"
    json_file.write_text('{"batch_size": 32, "momentum": 0.8}')
    assert load_config_file(json_file) == {"batch_size": 32, "momentum": 0.8}
    for name, text, said in (
        ("typo.toml", "batchsize = 32\n", "unknown setting 'batchsize'"),
        ("broken.toml", "lr = \n", "is not valid TOML"),
        ("broken.json", '{"lr": 0.1,}', "is not valid JSON"),
        ("list.json", "[1, 2]", "must hold a table of settings"),
        ("recipe.yaml", "lr: 0.1\n", "a config file is .json or .toml"),
    ):
        (tmp_path / name).write_text(text)
        with pytest.raises(vggspec.SpecError, match=said) as info:
            load_config_file(tmp_path / name)
    with pytest.raises(vggspec.SpecError) as info:
        load_config_file(tmp_path / "typo.toml")
    assert info.value.hint == "did you mean 'batch_size' for 'batchsize'?"


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_channels_last_and_workers(tmp_path, shapes, amp):
    """The options of modern trainers run through the same path (CPUs autocast to bf16 and fp16).
    fp16 brings the GPU recipe's loss scaler, whose state a resumed run must get back."""
    from vggspec.run.train import train

    run = train(tiny_config(tmp_path, shapes, epochs=1, amp=amp, channels_last=True, workers=2, micro_batch=4))
    record = json.loads((run / "metrics.jsonl").read_text())
    assert math.isfinite(record["train_loss"]) and 0 <= record["val_top1_err"] <= 1
    scaler = torch.load(run / "last.pt", weights_only=True)["scaler"]
    assert (scaler.get("scale", 0) > 0) == (amp == "fp16")  # the fp16 scaler's state is saved
    if amp == "fp16":
        train(TrainConfig(data=str(shapes), out=str(run), resume=True, epochs=2, progress=False))
        resumed = torch.load(run / "last.pt", weights_only=True)
        assert resumed["epoch"] == 2 and resumed["scaler"]["scale"] > 0


def test_the_progress_bar_shows_speed_data_wait_and_loss(tmp_path, shapes, capfd, monkeypatch):
    """On a terminal, tqdm's bar; in a log (no terminal), a plain line every LOG_EVERY_SECONDS
    instead of an endless line of carriage returns."""
    from vggspec.run import runlog
    from vggspec.run.train import train

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    train(tiny_config(tmp_path / "tty", shapes, epochs=1, progress=True))
    err = capfd.readouterr().err
    assert "epoch 1/1" in err and "img_s=" in err and "data_wait=" in err and "loss=" in err and "\r" in err
    assert "configuration (also in" in err  # the resolved configuration is printed

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    monkeypatch.setattr(runlog, "LOG_EVERY_SECONDS", 0.0)  # a line at every step
    train(tiny_config(tmp_path / "log", shapes, epochs=1, progress=True))
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("epoch 1/1: ")]
    assert len(lines) == 6 and "\r" not in err  # 3 classes × 32 images, batches of 16
    assert lines[-1].startswith("epoch 1/1: 6/6 steps (100%), ") and "loss=" in lines[-1] and "ETA " in lines[-1]


def test_training_in_this_process_leaves_torchs_global_state_as_it_was(tmp_path, shapes):
    """train() with one process runs in the caller's process: its seed and deterministic mode are
    the run's, not the caller's, and are put back afterwards."""
    from vggspec.run.train import train

    torch.manual_seed(1234)
    before = torch.get_rng_state()
    assert not torch.are_deterministic_algorithms_enabled()
    train(tiny_config(tmp_path, shapes, epochs=1, deterministic=True))
    assert torch.equal(torch.get_rng_state(), before)
    assert not torch.are_deterministic_algorithms_enabled()


def test_the_training_state_is_one_object_saved_and_restored_whole():
    """A checkpoint's progress is TrainingState's fields: what it saves, it restores; a field that an
    older checkpoint lacks keeps its default."""
    from vggspec.run.train import TrainingState

    def fresh() -> TrainingState:
        model = torch.nn.Linear(3, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max")
        return TrainingState(optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False)), model

    state, model = fresh()
    model(torch.ones(4, 3)).sum().backward()
    state.optimizer.step()
    state.scheduler.step(0.5)
    state.epoch, state.step, state.loss_sum, state.best = 3, 7, 12.5, {"epoch": 2}
    state.history.append({"epoch": 1})
    saved = state.state_dict()
    assert set(saved) == {
        "optimizer", "scheduler", "scaler", "epoch", "step", "loss_sum", "top1_wrong", "images_seen", "history",
        "best", "new_layers", "learning_began", "stopped",
    }  # fmt: skip

    restored, _ = fresh()
    restored.load_state_dict(saved)
    assert (restored.epoch, restored.step, restored.loss_sum, restored.best) == (3, 7, 12.5, {"epoch": 2})
    assert restored.history == [{"epoch": 1}] and restored.history is not state.history
    assert restored.scheduler.state_dict()["best"] == 0.5
    momentum = restored.optimizer.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(momentum, state.optimizer.state_dict()["state"][0]["momentum_buffer"])

    older, _ = fresh()
    older.load_state_dict({key: value for key, value in saved.items() if key != "loss_sum"})
    assert older.loss_sum == 0.0 and older.epoch == 3


def test_the_batch_splits_over_processes_and_micro_batches():
    split = TrainConfig(data="d", batch_size=256, micro_batch=48).batch_split(4)
    assert (split.share, split.micro, split.per_step) == (64, 48, 2)
    assert TrainConfig(data="d", batch_size=256).batch_split(1) == (256, 256, 1)
    # Over 3 processes the first takes one image more (256 = 86 + 85 + 85), as rank::world slicing gives it.
    config = TrainConfig(data="d", batch_size=256, micro_batch=43)
    assert [config.batch_split(3, rank=rank) for rank in range(3)] == [(86, 43, 2), (85, 43, 2), (85, 43, 2)]
    assert TrainConfig(data="d", batch_size=256).batch_split(3, rank=2) == (85, 85, 1)
    assert TrainConfig(data="d", batch_size=256).batch_split(3, micro=86, rank=1) == (85, 85, 1)
    with pytest.raises(vggspec.SpecError, match="a batch of 2 cannot be split over 3 processes"):
        TrainConfig(data="d", batch_size=2).batch_split(3)


def test_a_caller_can_silence_the_trainers_notes(tmp_path, shapes, capfd):
    """The notes go to the 'vggspec' logger: a program that calls train() quiets them as it quiets
    any library; warnings (an unreadable image) still come through."""
    import logging

    from vggspec.run.train import train

    logger = logging.getLogger("vggspec")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        train(tiny_config(tmp_path, shapes, epochs=1))
    finally:
        logger.setLevel(level)
    err = capfd.readouterr().err
    assert "configuration" not in err and "done:" not in err, err
    train(tiny_config(tmp_path / "loud", shapes, epochs=1))
    assert "done: 1 epoch in" in capfd.readouterr().err


@pytest.mark.parametrize("name", ["A-narrow-32", "D-narrow-32-bn"])
def test_a_bundled_small_spec_trains_from_the_defaults(tmp_path, name, capfd):
    """What a new user runs first: the bundled spec with a classifier for its 4 classes, and nothing else
    (but fewer epochs). Before auto, A-narrow-32 diverged (std 0.1); at the paper's batch of 256 its 256
    images made one step an epoch, and the plateau schedule spent its drops before it learned: the default
    batch is 16 here (16 steps), and the drops wait for learning to begin. At that batch and the paper's lr
    of 10⁻², A-narrow-32 learned (47% error in epoch 6) and lost it in epoch 9, back at chance to the end: the
    lr follows the batch. It must end clearly below chance. (With the paper's dropout 0.5 on its FC-64 layers,
    D-narrow-32-bn sat at chance for about 20 epochs.) The 224-pixel gray specs are too slow for the suite:
    tools/bench_defaults.py, BENCHMARKS.md."""
    import re

    from vggspec.data.samples import image_folder
    from vggspec.run.train import train

    data = image_folder(tmp_path / "data", classes=4, train=64, val=12, size=32)
    text = re.sub(r"\bFC-10\b", "FC-4", (ROOT / "specs" / "small" / f"{name}.vgg").read_text())
    spec = spec_file(tmp_path, text, f"{name}.vgg")
    run = train(TrainConfig(spec=spec, data=str(data), out=str(tmp_path / "run"), epochs=16,
                            workers=0, stats_images=50, progress=False))  # fmt: skip
    err = capfd.readouterr().err
    assert "--init auto chose glorot" in err
    assert "inputs divided by their std" not in err  # 64 channels wide: Glorot's start learns on the paper's
    assert "batch 16: the paper's 256 would give 1 step an epoch on 256 images" in err
    assert "lr 0.0025: the paper's 0.01 for a batch of 256, times √(16 / 256) (--lr sets it)" in err
    used = json.loads((run / "config.json").read_text())  # resolved, as a resume needs them
    assert (used["batch_size"], used["lr"]) == (16, 0.0025)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    chance = math.log(4)
    assert all(math.isfinite(r["train_loss"]) for r in records)
    assert min(r["train_loss"] for r in records[-3:]) < 0.8 * chance, [r["train_loss"] for r in records]
    assert min(r["val_top1_err"] for r in records) < 0.5  # chance: 0.75


WIDE_SPEC = "input: 16x16 RGB\nconv3-8\nmaxpool\nconv3-512\nmaxpool\nFC-32 [dropout=0]\nFC-3\nsoft-max\n"


@pytest.mark.parametrize(
    ("text", "init", "normalise", "standardised"),
    [(WIDE_SPEC, "kaiming", "auto", True), (WIDE_SPEC, "glorot", "auto", True), (WIDE_SPEC, "paper", "auto", False),
     (SMALL_SPEC, "glorot", "auto", False), (WIDE_SPEC, "kaiming", "mean", False), (SMALL_SPEC, "paper", "std", True)],
)  # fmt: skip
def test_random_weights_of_glorot_or_kaiming_on_a_wide_net_get_inputs_divided_by_their_std(
    tmp_path, shapes, capfd, text, init, normalise, standardised
):
    """--normalise auto: unit-variance inputs for the initialisations whose scale assumes them, on a network 512
    channels wide (where on the paper's inputs they diverged); the record that travels with the weights says so,
    and the data the network trained on was divided so."""
    from vggspec.data.colour import ColourStats
    from vggspec.data.preprocessing import Preprocessing
    from vggspec.nn.checkpoint import load_model
    from vggspec.run.train import train

    run = train(tiny_config(tmp_path, shapes, text=text, epochs=1, init=init, normalise=normalise))
    why = f": {init}'s start on a network 512 channels wide" if normalise == "auto" else ""
    assert (f"inputs divided by their std{why}" in capfd.readouterr().err) == standardised
    stats = ColourStats.model_validate_json((run / "colour_stats.json").read_text())
    record = load_model(run / "last.pt").preprocessing
    classes = sorted(path.name for path in (shapes / "train").iterdir())
    if standardised:
        assert record == Preprocessing.standardised(stats.mean, stats.std, classes)
        assert all(s > 1.0 for s in record.std) and not record.is_paper
    else:
        assert record == Preprocessing.paper(stats.mean, classes)


def test_a_net_started_from_a_trained_a_takes_as_inputs_what_a_was_trained_on(tmp_path, shapes):
    """--init-from: A's layers expect A's inputs (here divided by their std), whatever --normalise would say."""
    from vggspec.nn.checkpoint import load_model
    from vggspec.run.train import train

    a = train(tiny_config(tmp_path / "a", shapes, text=TINY_A, epochs=1, normalise="std"))
    b = train(tiny_config(tmp_path / "b", shapes, text=TINY_D, epochs=1, init_from=str(a), normalise="mean"))
    assert load_model(b / "last.pt").preprocessing == load_model(a / "last.pt").preprocessing


def test_weight_decay_spares_biases_when_asked(tmp_path, shapes):
    """--no-decay-biases: biases and batch norm's parameters in a group without weight decay; by
    default (the paper does not say) every parameter decays, as in torch's SGD."""
    from vggspec.run.train import train

    for decay_biases, groups in ((True, [5e-4]), (False, [5e-4, 0.0])):
        run = train(tiny_config(tmp_path / str(decay_biases), shapes, epochs=1, decay_biases=decay_biases))
        saved = torch.load(run / "last.pt", weights_only=True)
        assert [group["weight_decay"] for group in saved["optimizer"]["param_groups"]] == groups
        if not decay_biases:
            vectors = [key for key, value in saved["state_dict"].items() if value.ndim <= 1 and "running" not in key]
            vectors = [key for key in vectors if "num_batches" not in key]
            assert len(saved["optimizer"]["param_groups"][1]["params"]) == len(vectors)


def disk_full_for_checkpoints(monkeypatch) -> None:
    """The disk is full for every write of a checkpoint's temporary (``.last.pt.XXXX.tmp``), not for the rest."""
    import errno

    real_write = os.write

    def full_for_checkpoints(fd: int, data) -> int:
        if ".last.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_for_checkpoints)


def test_a_full_disk_mid_checkpoint_names_the_file_and_a_resume_sweeps_what_kills_left(
    tmp_path, shapes, capfd, monkeypatch
):

    from vggspec.run.train import train

    run = train(tiny_config(tmp_path, shapes, epochs=1))
    saved = (run / "last.pt").read_bytes()
    disk_full_for_checkpoints(monkeypatch)
    with pytest.raises(vggspec.SpecError, match=f"cannot write {run / 'last.pt'}: No space left on device"):
        train(tiny_config(tmp_path, shapes, epochs=2, resume=True))
    monkeypatch.undo()
    assert (run / "last.pt").read_bytes() == saved and not list(run.glob(".*.tmp"))

    for name, size in ((".last.pt.0a1b2c3d.tmp", 3 << 20), (".best.pt.4e5f6a7b.tmp", 2 << 20)):
        (run / name).write_bytes(b"\0" * size)  # what two kills mid-write leave
    capfd.readouterr()
    train(tiny_config(tmp_path, shapes, epochs=2, resume=True))
    assert f"removed 2 temporary files a killed run left in {run} (5 MiB freed)" in capfd.readouterr().err
    assert not list(run.glob(".*.tmp"))


def test_the_default_batch_leaves_steps_in_an_epoch():
    from vggspec.plan.batch import default_batch

    assert [default_batch(n) for n in (10, 192, 400, 2000, 5119, 5120, 1_281_167)] == [16, 16, 16, 64, 128, 256, 256]
    assert default_batch(400, world=3) == 18 and default_batch(1_281_167, world=4) == 256


def test_the_default_lr_follows_the_batch():
    """Each step's noise as large as in the paper's recipe (10⁻² for 256 images), whatever the batch: at the paper's
    lr and a batch of 16, A-narrow-32 learned the shapes and lost them again (test_a_bundled_small_spec...)."""
    from vggspec.plan.batch import PAPER_BATCH, PAPER_LR, default_batch, default_lr

    assert default_lr(PAPER_BATCH) == PAPER_LR == 1e-2
    for images in (192, 2000, 1_281_167):
        batch = default_batch(images)
        assert default_lr(batch) / math.sqrt(batch) == pytest.approx(PAPER_LR / math.sqrt(PAPER_BATCH))
    assert default_lr(16) == 0.0025


def test_the_lr_schedule_waits_for_learning_to_begin(tmp_path, shapes, capfd):
    """At a rate too small to learn anything in 4 epochs the loss and error stay at chance's: with a patience of 0 the
    plateau schedule would have dropped the rate every epoch; it waits, and the run says why at its end.
    A run that learns drops as before, counted from the epoch it began to learn."""
    from vggspec.run.train import train

    from .conftest import tiny_config

    run = train(tiny_config(tmp_path / "still", shapes, epochs=4, lr=1e-7, lr_patience=0))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["train_loss"] > 0.9 * math.log(3) and r["val_top1_err"] > 0.7 * 2 / 3 for r in records)
    assert [r["lr"] for r in records] == [1e-7] * 4
    err = capfd.readouterr().err
    assert "the training loss never fell below 0.9 × chance's (ln 3 = 1.1)" in err
    assert "epoch 4: train loss" in err and "top-5" not in err  # of 3 classes: always 0, not shown
    assert torch.load(run / "last.pt", weights_only=True)["learning_began"] is None

    run = train(tiny_config(tmp_path / "learns", shapes, epochs=5, lr_patience=0, lr_drops=5))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    began = torch.load(run / "last.pt", weights_only=True)["learning_began"]
    assert began is not None and began < 5
    learnt = records[began - 1]
    assert learnt["train_loss"] < 0.9 * math.log(3) or learnt["val_top1_err"] < 0.7 * 2 / 3
    assert all(r["lr"] == 0.05 for r in records[:began])  # nothing dropped before, nor in that epoch itself
    assert "never fell" not in capfd.readouterr().err


def test_an_epoch_trains_on_phone_photos_stored_sideways(tmp_path, shapes):
    """Non-square JPEGs with EXIF orientation 6 (a phone's portrait photo, stored landscape) among the shapes,
    in training and validation: the epoch finishes and counts every image readable (it stopped with "stack
    expects each tensor to be equal size": TorchCodec turned the pixels, the crop came from the header's size)."""
    import shutil

    from vggspec.run.train import train

    from .images import picture, save_oriented

    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    for split in ("train", "val"):
        for k, shape in enumerate(sorted(p.name for p in (data / split).iterdir())):
            for i in range(4):
                save_oriented(data / split / shape / f"phone{i}.jpg", picture(24, 40, 10 * k + i), 6)
    run = train(tiny_config(tmp_path, data, epochs=1))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1 and math.isfinite(records[0]["train_loss"]) and records[0]["broken_images"] == 0


# -- one run per folder ------------------------------------------------------------------------------------------


def test_a_run_folder_is_held_by_one_run_at_a_time(tmp_path, shapes, capfd):
    """Two runs started on one --out mixed their files (one's metrics interleaved with the other's, config.json
    naming one seed while last.pt held the other's weights): the second is refused with exit 2, in one line that
    names the process holding the folder, before it reads or writes anything there."""
    from vggspec.run import runs
    from vggspec.run.train import train

    cfg = tiny_config(tmp_path, shapes, epochs=1)
    run = Path(cfg.out)
    with runs.held(run):  # another run, under way in this folder
        with pytest.raises(vggspec.SpecError, match=rf"{run} is in use by another run \(process {os.getpid()} on "):
            train(cfg)
        result = subprocess.run([sys.executable, "-m", "vggspec", *cli_args(cfg)], cwd=ROOT, capture_output=True,
                                text=True, timeout=300)  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert f"is in use by another run (process {os.getpid()}" in result.stderr and "Traceback" not in result.stderr
        assert sorted(p.name for p in run.iterdir()) == [runs.LOCK]  # nothing read or written by either
    capfd.readouterr()
    train(cfg)  # released: the folder is the next run's
    assert (run / "last.pt").is_file() and "took over" not in capfd.readouterr().err


def test_a_killed_runs_lock_is_taken_over_with_a_note(tmp_path, shapes, capfd):
    """A run killed (SIGKILL, a power loss) leaves its name in the lock file but holds nothing: the next run
    takes the folder over and says from whom."""
    from vggspec.run import runs
    from vggspec.run.train import train

    cfg = tiny_config(tmp_path, shapes, epochs=1)
    run = Path(cfg.out)
    run.mkdir(parents=True)
    dead = {"pid": 999_999, "host": "node7", "started": 0, "command": "vggspec train D --out run"}
    (run / runs.LOCK).write_text(json.dumps(dead))
    capfd.readouterr()
    train(cfg)
    err = capfd.readouterr().err
    assert f"took over {run} from a run that did not finish (process 999999 on node7" in err
    assert (run / runs.LOCK).read_text() == ""  # released whole when the run ended


def test_a_run_that_stops_on_bad_data_leaves_no_empty_folder(tmp_path, shapes):
    """An empty class folder: refused in one line, and the --out it created is gone again (it was left behind)."""
    import shutil

    from vggspec.run.train import train

    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    empty = next((data / "train").iterdir())
    shutil.rmtree(empty)
    empty.mkdir()
    cfg = tiny_config(tmp_path, data, epochs=1)
    with pytest.raises(vggspec.SpecError, match="holds no images"):
        train(cfg)
    assert not Path(cfg.out).exists()


def test_a_run_that_cannot_save_its_first_checkpoint_does_not_speak_of_one(tmp_path, shapes, monkeypatch):
    """A full disk before anything was saved: the hint says so, instead of pointing at a last.pt and --resume."""
    from vggspec.run.train import train

    disk_full_for_checkpoints(monkeypatch)
    with pytest.raises(vggspec.SpecError) as caught:
        train(tiny_config(tmp_path, shapes, epochs=1))
    assert "No space left on device" in str(caught.value)
    assert "nothing was saved yet" in str(caught.value) and "--resume" not in str(caught.value)


def test_a_training_step_that_cannot_fit_is_refused_before_anything_is_built(tmp_path, shapes, monkeypatch):
    """The training budget is asked before the network is built, the colour statistics computed or a batch
    read: a step that needs more than the device has free is one line with the numbers."""
    from vggspec.run import training_model
    from vggspec.run.train import train

    monkeypatch.setattr(training_model, "free_memory", lambda device: 100_000)  # 97.7 KiB free
    cfg = tiny_config(tmp_path, shapes, epochs=1)
    with pytest.raises(vggspec.SpecError, match=r"a training step of .* more than the 97.7 KiB it has") as info:
        train(cfg)
    assert "--micro-batch" in info.value.hint
    assert not (Path(cfg.out) / "colour_stats.json").exists()


# -- runs that stop when they are done, and what they leave to read ---------------------------------------------


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def plateau_stop(records: list[dict], began: int, patience: int, drops: int) -> int | None:
    """The epoch after which torch's ReduceLROnPlateau, stepped from the epoch learning began, would lower the lr
    for the (drops + 1)-th time: a plateau is patience + 1 epochs in a row without an accuracy better than the best
    by more than 1e-4 of it; then it counts from 0 again. None: no such epoch."""
    best, bad, plateaus = -math.inf, 0, 0
    for record in records[began - 1 :]:
        accuracy = 1 - record["val_top1_err"]
        if accuracy > best * (1 + 1e-4):
            best, bad = accuracy, 0
        else:
            bad += 1
        if bad > patience:
            plateaus, bad = plateaus + 1, 0
            if plateaus > drops:
                return record["epoch"]
    return None


def without_timings(records: list[dict]) -> list[dict]:
    """What two runs that train the same give the same: all but the times and why the run ended."""
    timings = ("images_per_s", "data_wait", "seconds", "stopped")
    return [{key: value for key, value in r.items() if key not in timings} for r in records]


def test_a_run_stops_where_the_schedule_has_no_drop_left_says_why_and_resumes_to_nothing(tmp_path, shapes, capfd):
    """With one drop and a patience of 0, the run ends at its second plateau, as ReduceLROnPlateau counts them; it
    says why in one line (also in events.log), on the last line of metrics.jsonl and in summary.json. Resumed, it
    trains nothing. --no-early-stop trains the same epochs and goes on to --epochs; a run resumed before the stop
    stops where the uninterrupted one did, with its weights."""
    from vggspec.run.train import train

    common = dict(epochs=30, lr_patience=0, lr_drops=1, deterministic=True)
    run = train(tiny_config(tmp_path / "early", shapes, **common))
    records, saved = metrics(run), torch.load(run / "last.pt", weights_only=True)
    stop = plateau_stop(records, saved["learning_began"], patience=0, drops=1)
    assert stop is not None and 2 <= stop < 30, records
    assert [r["epoch"] for r in records] == list(range(1, stop + 1))
    assert records[-1]["stopped"] == "plateau" and not any("stopped" in r for r in records[:-1])
    assert len({r["lr"] for r in records}) == 2  # the one drop
    assert (saved["epoch"], saved["stopped"]) == (stop, "plateau")
    best = min(records, key=lambda r: r["val_top1_err"])
    since = stop - best["epoch"]
    line = (
        f"stopped after epoch {stop}: the learning rate was lowered once and validation error has not improved for "
        f"{since} epoch{'s' if since != 1 else ''} since (best: epoch {best['epoch']}, {best['val_top1_err']:.2%})"
    )
    assert line in capfd.readouterr().err and line in (run / "events.log").read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["stopped"], summary["message"], summary["epochs"], summary["max_epochs"]) == (
        "plateau", line, stop, 30,
    )  # fmt: skip
    assert summary["best"] == {key: best[key] for key in summary["best"]} and summary["best"]["epoch"] == best["epoch"]

    checkpoint = (run / "last.pt").read_bytes()
    train(TrainConfig(data=str(shapes), out=str(run), resume=True, epochs=40, progress=False))
    assert f"{run} {line}: nothing to train" in capfd.readouterr().err
    assert (run / "last.pt").read_bytes() == checkpoint and metrics(run) == records
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["stopped"], summary["epochs"], summary["epochs_this_session"]) == ("plateau", stop, 0)

    on = train(tiny_config(tmp_path / "on", shapes, **{**common, "epochs": stop + 2, "early_stop": False}))
    longer = metrics(on)
    assert [r["epoch"] for r in longer] == list(range(1, stop + 3)) and longer[-1]["stopped"] == "epochs"
    assert without_timings(longer[:stop]) == without_timings(records)  # the same run, to the stop and beyond
    assert json.loads((on / "summary.json").read_text())["stopped"] == "epochs"

    first = tiny_config(tmp_path / "resumed", shapes, **{**common, "epochs": stop - 1})
    resumed = train(first)
    assert metrics(resumed)[-1]["stopped"] == "epochs"
    train(TrainConfig(data=str(shapes), out=first.out, resume=True, epochs=30, progress=False))
    assert without_timings(metrics(resumed)) == without_timings(records)
    assert metrics(resumed)[-1]["stopped"] == "plateau" and not any("stopped" in r for r in metrics(resumed)[:-1])
    assert_same_weights(final_weights(resumed), final_weights(run))


def test_the_metrics_hold_the_validation_loss_and_the_error_of_the_training_steps(tmp_path, shapes):
    """val_loss is the mean cross-entropy of the validation images, as evaluate --method center's posteriors of the
    same weights give it; train_top1_err counts whole images of the epoch's 6 steps of 16."""
    from vggspec.run.config import EvaluateConfig
    from vggspec.run.evaluate import evaluate
    from vggspec.run.train import train

    run = train(tiny_config(tmp_path, shapes, epochs=2))
    records = metrics(run)
    for record in records:
        wrong = record["train_top1_err"] * 96
        assert 0 <= record["train_top1_err"] <= 1 and wrong == pytest.approx(round(wrong), abs=1e-9)
    results = evaluate(EvaluateConfig(checkpoints=[str(run / "last.pt")], data=str(shapes), method="center",
                                      progress=False))  # fmt: skip
    (probs,) = (by_method["center"] for by_method in results.probs.values())
    picked = probs[torch.arange(len(results.labels)), results.labels]
    assert records[-1]["val_loss"] == pytest.approx(-picked.log().mean().item(), rel=1e-4)
    assert records[-1]["val_top1_err"] == pytest.approx(results.rows[0].top1_err, abs=1e-9)


def test_training_leaves_the_callers_matplotlib_backend_as_it_was(tmp_path, shapes):
    """A notebook that calls train() keeps its backend (matplotlib.use("Agg") in the trainer took its inline plots);
    the curves are drawn all the same."""
    import matplotlib

    from vggspec.run.train import train

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        run = train(tiny_config(tmp_path, shapes, epochs=1))
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    assert (run / "curves.png").read_bytes().startswith(b"\x89PNG\r\n")


# -- torch.compile (--compile) ---------------------------------------------------------------


def test_compile_trains_the_steps_of_an_uncompiled_run_and_saves_the_same_checkpoint(tmp_path, shapes, capfd):
    """--compile: the network that trains runs compiled (the first step said, with its compile time), the steps
    are an uncompiled run's to float rounding (without dropout, whose masks compiled code draws otherwise), and
    the checkpoint is the same: the same keys (no ``_orig_mod.``), weights load_model reads."""
    import re

    from vggspec.run.train import train

    plain = train(tiny_config(tmp_path / "plain", shapes, SMALL_SPEC, epochs=1))
    capfd.readouterr()
    compiled = train(tiny_config(tmp_path / "compiled", shapes, SMALL_SPEC, epochs=1, compile=True))
    err = capfd.readouterr().err
    assert re.search(r"\ntorch\.compile: the first step took [^;]+ to compile; later steps run compiled", err), err
    assert "torch.compile failed" not in err
    ours, theirs = final_weights(compiled), final_weights(plain)
    assert ours.keys() == theirs.keys() and not any("_orig_mod" in key for key in ours)
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-4, atol=1e-5)
    model = vggspec.load_model(compiled / "last.pt")
    assert model.state_dict().keys() == ours.keys()
    assert json.loads((compiled / "config.json").read_text())["compile"] is True


def test_a_run_that_cannot_compile_warns_and_trains_uncompiled(tmp_path, shapes, capfd, monkeypatch):
    """No C compiler, an unsupported platform: one line, no traceback, and the run trains as without --compile."""
    from vggspec.nn import inference
    from vggspec.run.train import train

    def refuse(*args, **kwargs):
        raise RuntimeError("Windows not yet supported for torch.compile")

    monkeypatch.setattr(torch, "compile", refuse)
    monkeypatch.setattr(inference, "_COMPILE_FAILURES_SAID", set())
    run = train(tiny_config(tmp_path, shapes, SMALL_SPEC, epochs=1, compile=True))
    err = capfd.readouterr().err
    warning = "warning: torch.compile failed (RuntimeError: Windows not yet supported for torch.compile); running"
    assert f"\n{warning} uncompiled\n" in err
    assert "Traceback" not in err and "the first step took" not in err
    plain = train(tiny_config(tmp_path / "plain", shapes, SMALL_SPEC, epochs=1))
    assert_same_weights(final_weights(run), final_weights(plain))
