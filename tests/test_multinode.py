"""Beyond one machine, on this one: two torchrun launchers that meet on the loopback play two machines
(gloo, one process each), and a process that kills itself at a known step plays a dead worker
(VGGSPEC_TEST_KILL_AT: no timing decides where the run was when it died)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs the test extras: pip install -e '.[test]'")

from vggspec.config import EvaluateConfig, TrainConfig  # noqa: E402

from .conftest import ROOT, SMALL_SPEC, assert_same_weights, cli_args, final_weights, tiny_config  # noqa: E402

TIMEOUT = 240  # seconds: a launcher still running then is a hang, and fails its test
# A run of 2 epochs of 6 steps, checkpointed every 2 steps: a death after step 5 resumes from step 4.
RECIPE = dict(text=SMALL_SPEC, epochs=2, lr=0.02, deterministic=True, checkpoint_every=2)
JOB = "vgg-job-7"  # the two machines' torchrun --rdzv-id


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(**extra: str) -> dict[str, str]:
    """One thread a process (two "machines" share this one's cores), and no test hook unless given."""
    env = {key: value for key, value in os.environ.items() if key != "VGGSPEC_TEST_KILL_AT"}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def run(command: list[str], **extra: str) -> subprocess.CompletedProcess:
    """``python -m vggspec COMMAND`` here, as a user starts it."""
    return subprocess.run(
        [sys.executable, "-m", "vggspec", *command],
        cwd=ROOT,
        env=environment(**extra),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def two_machines(first: list[str], second: list[str], *torchrun: str, **env: str) -> list[tuple[int, str]]:
    """``first`` and ``second`` (vggspec's arguments) started as the README says, one torchrun launcher each
    (with ``torchrun``'s options too, and ``env``), meeting at 127.0.0.1 on a free port: their exit statuses and
    what each printed."""
    endpoint = f"127.0.0.1:{free_port()}"
    launchers = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
            + ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, *torchrun]
            + ["-m", "vggspec", *command],
            cwd=ROOT,
            env=environment(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: a hang is ended whole, workers included
        )
        for command in (first, second)
    ]
    try:
        return [(launcher.wait(timeout=TIMEOUT), launcher.stdout.read()) for launcher in launchers]
    finally:
        for launcher in launchers:
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)
            launcher.stdout.close()


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_close_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def across_two_machines(tmp_path_factory, shapes) -> tuple[TrainConfig, list[tuple[int, str]]]:
    """The README's command on two "machines" sharing --out: one writes `--nproc 1` (after a `--`, which keeps
    torchrun's parser off it), one leaves it out. The run the interrupted ones below must end as, too: two
    processes, one thread each, as on one machine."""
    cfg = tiny_config(tmp_path_factory.mktemp("two-machines"), shapes, **RECIPE)
    command = cli_args(cfg)
    nodes = two_machines(["--", *command, "--nproc", "1"], command, "--rdzv-id", JOB)
    for code, output in nodes:
        assert code == 0, output
    return cfg, nodes


# -- several machines ------------------------------------------------------------------


def test_two_machines_train_the_run_one_process_trains_and_evaluate_each_image_once(
    tmp_path, shapes, across_two_machines
):
    """Rank 0 alone writes the run folder and speaks."""
    from vggspec.evaluate import evaluate
    from vggspec.train import train

    cfg, nodes = across_two_machines
    one = train(tiny_config(tmp_path / "one", shapes, **RECIPE))
    two = Path(cfg.out)
    assert_close_weights(final_weights(two), final_weights(one))
    assert len(metrics(two)) == 2  # appended by one process, not two
    assert [m["val_top1_err"] for m in metrics(two)] == pytest.approx([m["val_top1_err"] for m in metrics(one)])
    speakers = [output for _, output in nodes if "epoch 1: train loss" in output]
    assert len(speakers) == 1 and "2 processes × 8" in speakers[0], [output for _, output in nodes]

    options = ["--data", str(shapes), "--method", "center", "--no-progress"]
    outputs = ["--json", str(tmp_path / "two.json"), "--save-probs", str(tmp_path / "two.pt")]
    nodes = two_machines(["evaluate", str(two), *options, *outputs], ["evaluate", str(two), *options, *outputs])
    for code, output in nodes:
        assert code == 0, output
    here = dict(checkpoints=[str(two)], data=str(shapes), method="center", progress=False)
    evaluate(EvaluateConfig(**here, json_path=str(tmp_path / "one.json"), save_probs=str(tmp_path / "one.pt")))
    apart, together = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("two", "one"))
    assert apart["images"] == together["images"] == 36
    assert [row["top1_err"] for row in apart["rows"]] == pytest.approx([row["top1_err"] for row in together["rows"]])
    probs = [torch.load(tmp_path / f"{name}.pt", weights_only=False)["probs"] for name in ("two", "one")]
    for network in probs[1]:
        shared, alone = probs[0][network]["center"], probs[1][network]["center"]
        assert not shared.isnan().any()  # every image evaluated by one machine or the other
        torch.testing.assert_close(shared, alone, rtol=1e-4, atol=1e-6)


def test_a_torchrun_job_started_again_resumes_its_run_and_another_job_does_not(across_two_machines, monkeypatch):
    """A machine joining (torchrun restarts the processes without counting it) or a requeued SLURM job:
    the same --rdzv-id resumes the run it wrote; another job is refused its folder, as a new run is."""
    from vggspec.train import _restarted

    cfg = across_two_machines[0]
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun starts a process
    for job, count, resumes in ((JOB, "0", True), ("vgg-job-8", "0", False), ("none", "0", False), ("none", "1", True)):
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", job)
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", count)
        assert _restarted(cfg).resume == resumes, (job, count)


def test_machines_started_with_another_recipe_or_a_bad_flag_stop_with_one_line_each(tmp_path, shapes):
    """No hang and no traceback of vggspec's: every machine says what differs, or what the other met."""
    cfg = tiny_config(tmp_path, shapes, text=SMALL_SPEC, epochs=1)
    command = cli_args(cfg)
    started = time.monotonic()
    nodes = two_machines(command, [*command, "--lr", "0.03"])
    for code, output in nodes:
        assert code != 0
        assert output.count("the processes disagree on the run: process") == 1, output
        assert "lr 0.03 (process 0: 0.05)" in output or "lr 0.05 (process 0: 0.03)" in output
        ours = output.split("failed (exitcode")[0]  # then torchrun's report of the failed process, traceback and all
        assert "Traceback" not in ours and ours.strip().startswith("error: the processes disagree"), output
    assert not (Path(cfg.out) / "last.pt").exists()

    # --nproc 2 where torchrun starts one process: that machine says so; the other is told, not left waiting.
    nodes = two_machines(command, ["--", *command, "--nproc", "2"])
    outputs = [output for _, output in nodes]
    assert all(code != 0 for code, _ in nodes), outputs
    said = "--nproc 2, but torchrun started 1 process on this node (--nproc-per-node 1)"
    assert sum(said in output for output in outputs) == 2, outputs  # its own error, and the other's news of it
    assert sum("stopped: --nproc 2, but torchrun" in output for output in outputs) == 1, outputs
    assert time.monotonic() - started < TIMEOUT


def test_a_rendezvous_no_other_machine_reaches_ends_at_its_timeout(tmp_path, shapes):
    """One machine of two: torchrun's rendezvous waits join_timeout seconds (600 by default), then stops."""
    cfg = tiny_config(tmp_path, shapes, text=SMALL_SPEC, epochs=1)
    endpoint = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
        + ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-conf", "join_timeout=3"]
        + ["-m", "vggspec", *cli_args(cfg)],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode != 0 and "RendezvousTimeoutError" in result.stderr
    assert time.monotonic() - started < 60
    assert not Path(cfg.out).exists()


# -- elastic recovery ------------------------------------------------------------------


def test_under_torchrun_a_process_killed_on_one_machine_restarts_both_and_the_run_ends_as_if_never_killed(
    tmp_path, shapes, across_two_machines
):
    """Process 1 dies after step 5; process 0, on the other machine, loses it and leaves; both torchruns start
    their processes again, which resume from step 4 without being told to. Restarts to spare: torchrun's second
    rendezvous now and then fails once (a process of the new group refused by another that is being restarted)."""
    cfg = tiny_config(tmp_path, shapes, **RECIPE)
    command = cli_args(cfg)
    nodes = two_machines(command, command, "--max-restarts", "3", VGGSPEC_TEST_KILL_AT="1:5")
    for code, output in nodes:
        assert code == 0, output
    events = (Path(cfg.out) / "events.log").read_text().splitlines()  # said by process 0 alone
    assert events and "resuming" in events[0] and "at epoch 1, step 4/6" in events[0], events
    assert_same_weights(final_weights(Path(cfg.out)), final_weights(Path(across_two_machines[0].out)))


def test_a_killed_process_is_restarted_until_the_restarts_are_used_up_and_the_run_ends_as_if_never_killed(
    tmp_path, shapes, across_two_machines, capfd, monkeypatch
):
    """Two processes on one machine, one restart: process 1 dies after step 5 (the restart resumes from step 4),
    then process 0, the one that writes, after step 9 (no restart left: the run stops, last.pt of step 8 whole).
    Resumed by two processes, it ends with the weights of the two machines' run, bit for bit; by one, each step
    takes the same 16 images: the same weights, to float rounding."""
    from vggspec.train import train

    uninterrupted = Path(across_two_machines[0].out)
    cfg = tiny_config(tmp_path, shapes, nproc=2, max_restarts=1, **RECIPE)
    run_dir, last = Path(cfg.out), Path(cfg.out) / "last.pt"
    result = run(cli_args(cfg), VGGSPEC_TEST_KILL_AT="1:5,0:9:2")
    assert result.returncode == 4, result.stderr
    assert "process 1 was killed by SIGKILL at" in result.stderr
    assert "starting the 2 processes again (restart 1 of 1)" in result.stderr
    events = (run_dir / "events.log").read_text()
    assert "restart 1 of 1, after process 1 was killed by SIGKILL at" in events
    assert "resuming at epoch 1, step 4/6" in events  # the checkpoint of step 4: step 5 is trained again
    message = result.stderr.strip().splitlines()
    assert message[-2].startswith("error: process 0 was killed by SIGKILL at"), result.stderr
    assert message[-2].endswith(f"1 restart used up: training stopped; the last good checkpoint is kept ({last}: "
                                "epoch 2, step 2)")  # fmt: skip
    assert message[-1] == f"hint: continue with: vggspec train --out {cfg.out} --resume"
    assert "Traceback" not in result.stderr
    state = torch.load(last, weights_only=True)  # whole: a killed writer leaves the checkpoint before
    assert (state["epoch"], state["step"]) == (1, 2)

    fewer = tmp_path / "fewer"
    shutil.copytree(run_dir, fewer)
    capfd.readouterr()
    train(TrainConfig(data=str(shapes), out=str(fewer), resume=True, nproc=1, progress=False))
    said = (
        "saved by 2 processes, resumed by 1: each now takes 16 images a step (micro-batches of 16); "
        "the global batch stays 16, and each step sees the same images"
    )
    assert said in capfd.readouterr().err and said in (fewer / "events.log").read_text()
    assert_close_weights(final_weights(fewer), final_weights(uninterrupted))

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as every process above: the same sums, bit for bit, on any machine
    train(TrainConfig(data=str(shapes), out=cfg.out, resume=True, progress=False))  # two processes, as saved
    assert_same_weights(final_weights(run_dir), final_weights(uninterrupted))
    losses = [record["train_loss"] for record in metrics(run_dir)]
    assert losses == [record["train_loss"] for record in metrics(uninterrupted)]
