"""Beyond one machine, on this one: two torchrun launchers that meet on the loopback play two machines
(gloo, one process each), and a process that kills itself at a known step plays a dead worker
(VGGSPEC_TEST_FAULT_AT: no timing decides where the run was when it died)."""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs the test extras: pip install -e '.[test]'")

from vggspec.run.config import EvaluateConfig, TrainConfig  # noqa: E402

from .conftest import ROOT, SMALL_SPEC, assert_same_weights, cli_args, final_weights, tiny_config  # noqa: E402

TIMEOUT = 240  # seconds: a launcher still running then is a hang, and fails its test
# A run of 2 epochs of 6 steps, checkpointed every 2 steps: a death after step 5 resumes from step 4.
RECIPE = dict(text=SMALL_SPEC, epochs=2, lr=0.02, deterministic=True, checkpoint_every=2)
JOB = "vgg-job-7"  # the two machines' torchrun --rdzv-id


def free_port() -> int:
    """A port free on the loopback, below the range the kernel hands out to outgoing connections. Within it, until
    the launcher that serves the rendezvous binds it, the port can be given to any connection; among them the other
    launcher's own attempts to reach it, which may then connect to themselves (TCP's simultaneous open): the port
    is taken, neither launcher serves it, and both time out (seen once in a full run)."""
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):  # not Linux: any free port
        ephemeral = None
    candidates = random.sample(range(max(1024, ephemeral - 16384), ephemeral), 256) if ephemeral else [0] * 256
    for port in candidates:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError("no free port on the loopback")


def environment(**extra: str) -> dict[str, str]:
    """One thread a process (two "machines" share this one's cores), and no test hook unless given."""
    env = {key: value for key, value in os.environ.items() if key != "VGGSPEC_TEST_FAULT_AT"}
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


def two_machines(
    first: list[str], second: list[str], *torchrun: str, launcher: str = "torchrun", **env: str
) -> list[tuple[int, str]]:
    """``first`` and ``second`` (vggspec's arguments) started as the README says, meeting at 127.0.0.1 on a free
    port: one torchrun launcher each (with ``torchrun``'s options too), or with ``launcher="vggspec"`` vggspec
    itself (``--nnodes 2 --rdzv-endpoint``); ``env`` added to their environment. Their exit statuses and what each
    printed."""
    endpoint = f"127.0.0.1:{free_port()}"
    if launcher == "torchrun":
        torchrun_command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
        torchrun_command += ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, *torchrun, "-m", "vggspec"]
        commands = [torchrun_command + command for command in (first, second)]
    else:
        rendezvous = ["--nnodes", "2", "--rdzv-endpoint", endpoint]
        commands = [[sys.executable, "-m", "vggspec", *command, *rendezvous] for command in (first, second)]
    launchers = [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: a hang is ended whole, workers included
        )
        for command in commands
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
    from vggspec.run.evaluate import evaluate
    from vggspec.run.train import train

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


def test_vggspec_started_on_two_machines_evaluates_each_image_once(tmp_path, shapes, across_two_machines):
    """evaluate --nnodes 2: the table of one process, printed by the first machine."""
    from vggspec.run.evaluate import evaluate

    run_dir = across_two_machines[0].out
    options = ["evaluate", run_dir, "--data", str(shapes), "--method", "center", "--no-progress"]
    nodes = two_machines([*options, "--json", str(tmp_path / "two.json")], options, launcher="vggspec")
    for code, output in nodes:
        assert code == 0, output
    assert sum("top-1 err" in output for _, output in nodes) == 1
    here = dict(checkpoints=[run_dir], data=str(shapes), method="center", progress=False)
    evaluate(EvaluateConfig(**here, json_path=str(tmp_path / "one.json")))
    apart, together = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("two", "one"))
    assert apart["images"] == together["images"] == 36
    assert [row["top1_err"] for row in apart["rows"]] == pytest.approx([row["top1_err"] for row in together["rows"]])


def test_an_evaluation_whose_checkpoint_one_machine_lacks_stops_both_saying_why(tmp_path, shapes, across_two_machines):
    """The checkpoint is read in the processes: the one that cannot read it tells the others at the first
    exchange, instead of leaving them a lost connection (status 4 and gloo's words)."""
    missing = tmp_path / "not-copied"
    options = ["evaluate", "--data", str(shapes), "--method", "center", "--no-progress"]
    nodes = two_machines([*options, across_two_machines[0].out], [*options, str(missing)], launcher="vggspec")
    for code, output in nodes:
        assert code == 2 and "Traceback" not in output and "gloo" not in output, output
    assert f"error: no such checkpoint: {missing}" in nodes[1][1], nodes[1][1]
    assert f" stopped: no such checkpoint: {missing}" in nodes[0][1], nodes[0][1]


def test_a_torchrun_job_started_again_resumes_its_run_and_another_job_does_not(across_two_machines, monkeypatch):
    """A machine joining (torchrun restarts the processes without counting it) or a requeued SLURM job:
    the same --rdzv-id resumes the run it wrote; another job is refused its folder, as a new run is."""
    from vggspec.run.startup import restarted as _restarted

    cfg = across_two_machines[0]
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun starts a process
    for job, count, resumes in ((JOB, "0", True), ("vgg-job-8", "0", False), ("none", "0", False), ("none", "1", True)):
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", job)
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", count)
        assert _restarted(cfg).resume == resumes, (job, count)


def test_machines_started_with_another_recipe_stop_with_one_line_each(tmp_path, shapes):
    """vggspec started on two machines with different commands: no hang and no traceback, each machine says
    what differs, and nothing else but that it was meeting the other."""
    cfg = tiny_config(tmp_path, shapes, text=SMALL_SPEC, epochs=1)
    command = cli_args(cfg)
    nodes = two_machines(command, [*command, "--lr", "0.03"], launcher="vggspec")
    for code, output in nodes:
        assert code == 2, output
        lines = output.strip().splitlines()
        assert len(lines) == 3 and lines[0].startswith("meeting 2 machines at 127.0.0.1:"), output
        assert lines[1].startswith("error: the processes disagree on the run: process 1 on "), output
        assert "lr 0.03 (process 0: 0.05)" in lines[1] or "lr 0.05 (process 0: 0.03)" in lines[1]
        assert lines[2].startswith("hint: start every node with the same SPEC and settings")
    assert not (Path(cfg.out) / "last.pt").exists()


def test_a_machine_whose_copy_of_the_data_is_wrong_stops_both_saying_why(tmp_path, shapes):
    """Its own problem on one machine, the news of it on the other: no wait for torch's 30-minute timeout, and
    no restart of a stop that would only repeat itself."""
    cfg = tiny_config(tmp_path, shapes, text=SMALL_SPEC, epochs=1)
    copy = tmp_path / "copy"
    shutil.copytree(shapes / "train", copy / "train")  # no val split
    command = cli_args(cfg)
    nodes = two_machines(command, [*command, "--data", str(copy)], launcher="vggspec")
    problem = f"{copy} has no 'val' split"
    for code, output in nodes:
        assert code == 2 and "Traceback" not in output and "restart" not in output, output
    assert nodes[1][1].strip().splitlines()[1].startswith(f"error: {problem}"), nodes[1][1]
    assert " stopped: " + problem in nodes[0][1], nodes[0][1]
    assert not (Path(cfg.out) / "last.pt").exists()


def test_a_diverging_loss_is_said_on_every_machine(tmp_path, shapes):
    """Every process sees the NaN loss at the same step and stops with status 3; the terminal of each machine,
    not only process 0's, says what happened and what was kept, with no restart."""
    cfg = tiny_config(tmp_path, shapes, text=SMALL_SPEC, epochs=2, lr=1e6, checkpoint_every=1)
    command = cli_args(cfg)
    nodes = two_machines(command, command, launcher="vggspec")
    for code, output in nodes:
        assert code == 3, output
        assert "the loss became nan at epoch 1" in output and "last good checkpoint is kept" in output, output
        assert "Traceback" not in output and "again" not in output, output


def test_sigterm_on_one_machine_saves_and_is_said_on_both(tmp_path, shapes):
    """The launcher of the second machine gets SIGTERM after step 3: every process stops after the next step, the
    checkpoint is saved, and each machine says so in one line (not the launcher's log of the signal)."""
    cfg = tiny_config(tmp_path, shapes, text=SMALL_SPEC, epochs=2)
    command = cli_args(cfg)
    nodes = two_machines(command, command, launcher="vggspec", VGGSPEC_TEST_FAULT_AT="1:3:1:term")
    for code, output in nodes:
        assert code == 130 and "signal" not in output and "Traceback" not in output, output
        assert output.strip().splitlines()[-1] == (
            f"interrupted: saved {cfg.out}/last.pt at epoch 1, step 4; continue with: vggspec train --out {cfg.out} "
            "--resume"
        ), output
    assert torch.load(Path(cfg.out) / "last.pt", weights_only=True)["step"] == 4


def test_a_machine_that_stops_before_its_processes_start_tells_the_other(tmp_path, shapes):
    """The second machine's copy of the spec has a typo: it says so where it is typed, with the caret, then tells
    the first, which stops at once saying which machine stopped and why instead of waiting out --rdzv-timeout."""
    cfg = tiny_config(tmp_path, shapes, text=SMALL_SPEC, epochs=1)
    typo = tmp_path / "typo.vgg"
    typo.write_text(Path(cfg.spec).read_text().replace("conv3-", "conv3_", 1))
    command = [*cli_args(cfg), "--rdzv-timeout", "120"]
    started = time.monotonic()
    nodes = two_machines(command, [command[0], str(typo), *command[2:]], launcher="vggspec")
    assert time.monotonic() - started < 60
    (first_code, first), (second_code, second) = nodes
    assert first_code == second_code == 2, nodes
    lines = second.strip().splitlines()
    assert lines[0].startswith(f"{typo}:") and "^" in second, second
    assert lines[-1].startswith("telling the other machines at 127.0.0.1:"), second
    lines = first.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("meeting 2 machines at 127.0.0.1:"), first
    assert lines[1].startswith("error: process ") and f" stopped: {typo}:" in lines[1], first
    assert lines[2] == "hint: mend it, then start every node", first
    assert "Traceback" not in first + second and not (Path(cfg.out) / "last.pt").exists()


def test_machines_that_all_stop_before_their_processes_start_tell_each_other_and_stop_at_once(tmp_path, shapes):
    """The same bad flag on both machines (found once torch is imported): each says it, and their telling meets
    at once; alone, a machine tells nobody and stops when its (shortened) wait ends, with its own error only."""
    cfg = tiny_config(tmp_path, shapes, text=SMALL_SPEC, epochs=1)
    command = [*cli_args(cfg), "--freeze", "conv9", "--rdzv-timeout", "120"]
    started = time.monotonic()
    nodes = two_machines(command, command, launcher="vggspec")
    assert time.monotonic() - started < 60
    for code, output in nodes:
        lines = output.strip().splitlines()
        assert code == 2 and lines[0].startswith("error: --freeze conv9"), output
        assert lines[-1].startswith("telling the other machines at 127.0.0.1:") and "stopped" not in output, output
    alone = run([*command[:-2], "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-timeout", "3"])
    assert alone.returncode == 2 and alone.stderr.startswith("error: --freeze conv9"), alone.stderr
    assert "(for up to 3 s)" in alone.stderr and "not every machine" not in alone.stderr, alone.stderr


def test_under_torchrun_a_bad_flag_on_one_machine_is_said_on_both(tmp_path, shapes):
    """--nproc 2 where torchrun starts one process: that machine says so; the other is told, not left waiting.
    After vggspec's lines torchrun reports the failed process in its own words (with a traceback of torch's
    agent when the machine that held the rendezvous left first): vggspec's own code shows none."""
    cfg = tiny_config(tmp_path, shapes, text=SMALL_SPEC, epochs=1)
    command = cli_args(cfg)
    started = time.monotonic()
    nodes = two_machines(command, ["--", *command, "--nproc", "2"])
    outputs = [output for _, output in nodes]
    assert all(code != 0 for code, _ in nodes), outputs
    said = "--nproc 2, but torchrun started 1 process on this node (--nproc-per-node 1)"
    assert sum(said in output for output in outputs) == 2, outputs  # its own error, and the other's news of it
    assert sum("stopped: --nproc 2, but torchrun" in output for output in outputs) == 1, outputs
    assert not any(f"{os.sep}vggspec{os.sep}" in line for output in outputs for line in output.splitlines()
                   if line.lstrip().startswith('File "')), outputs  # fmt: skip
    assert time.monotonic() - started < TIMEOUT


def test_a_rendezvous_no_other_machine_reaches_ends_at_its_timeout(tmp_path, shapes):
    """One machine of two. Under torchrun the rendezvous waits join_timeout seconds (600 by default), then stops
    with torchrun's error; vggspec's own --nnodes waits --rdzv-timeout seconds and says so in one line."""
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

    started = time.monotonic()
    result = run([*cli_args(cfg), "--nnodes", "2", "--rdzv-endpoint", endpoint, "--rdzv-timeout", "3"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"meeting 2 machines at {endpoint}, 1 process on this one (waiting up to 3 s: --rdzv-timeout) ...",
        f"error: not every machine came to the rendezvous at {endpoint} within 3 s: --nnodes 2 waits for them all "
        "(for MIN of MIN:MAX)",
        "hint: start the same command, with the same --nnodes and --rdzv-endpoint, on every machine within "
        "--rdzv-timeout seconds of the first",
    ]
    assert time.monotonic() - started < 60
    assert not Path(cfg.out).exists()


def test_a_rendezvous_port_another_program_holds_is_said_in_one_line_after_the_timeout(tmp_path, shapes):
    """A program that accepts connections on the port and never answers: torch's store client would wait on it as
    long as it keeps them open; vggspec gives up --rdzv-timeout seconds (and a margin) after it began."""
    from vggspec.run.distributed import _Watchdog

    cfg = tiny_config(tmp_path, shapes, text=SMALL_SPEC, epochs=1)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(8)
        endpoint = "127.0.0.1:%d" % squatter.getsockname()[1]
        started = time.monotonic()
        result = run([*cli_args(cfg), "--nnodes", "2", "--rdzv-endpoint", endpoint, "--rdzv-timeout", "2"])
        waited = time.monotonic() - started
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[1:] == [
        f"error: {endpoint} answers, but not as a rendezvous: another program holds port {endpoint[10:]} on "
        "127.0.0.1",
        "hint: choose a free port for --rdzv-endpoint, the same on every machine",
    ]
    assert 2 + _Watchdog.MARGIN <= waited < 2 + _Watchdog.MARGIN + 30
    assert not Path(cfg.out).exists()


def test_a_rendezvous_nothing_answers_at_is_said_with_the_reason():
    """What a machine that cannot reach HOST:PORT says (the endpoint's host is another machine, so it is not tried
    here, where every loopback address is this machine's: torch would serve the rendezvous itself)."""
    from vggspec.run.distributed import _unreachable
    from vggspec.run.rendezvous import Machines

    port = free_port()  # closed as soon as found
    problem = _unreachable(Machines(2, 2, f"127.0.0.1:{port}", 5), None)
    assert problem.message == f"cannot reach the rendezvous at 127.0.0.1:{port} within 5 s: Connection refused"
    assert problem.hint == (
        f"HOST must be one of the machines, started with the same command, and port {port} open to the others"
    )


# -- elastic recovery ------------------------------------------------------------------


def test_a_process_killed_on_one_machine_restarts_both_and_the_run_ends_as_if_never_killed(
    tmp_path, shapes, across_two_machines
):
    """Process 1 dies after step 5; process 0, on the other machine, loses it and leaves; both vggspec launchers
    (--nnodes) start their processes again, which resume from step 4 without being told to, and end with the
    weights of the uninterrupted run.

    Not under torchrun: there its restarted gloo processes hung in init_process_group in about 1 run of 4, with
    or without vggspec's changes (README, "Training on several machines")."""
    cfg = tiny_config(tmp_path, shapes, **RECIPE)
    command = cli_args(cfg)
    nodes = two_machines(command, command, launcher="vggspec", VGGSPEC_TEST_FAULT_AT="1:5")
    for code, output in nodes:
        assert code == 0, output
    events = (Path(cfg.out) / "events.log").read_text().splitlines()  # said by process 0 alone
    assert events and "resuming" in events[0] and "at epoch 1, step 4/6" in events[0], events
    assert_same_weights(final_weights(Path(cfg.out)), final_weights(Path(across_two_machines[0].out)))
    outputs = "\n".join(output for _, output in nodes)  # each machine says what it saw end, and that it starts again
    assert "process 1 was killed by SIGKILL at " in outputs, outputs
    assert "process 0 lost contact with the others at " in outputs, outputs
    assert outputs.count(": starting the process of this machine again (restart 1 of 3)") == 2, outputs
    assert "Traceback" not in outputs


def test_a_killed_process_is_restarted_until_the_restarts_are_used_up_and_the_run_ends_as_if_never_killed(
    tmp_path, shapes, across_two_machines, capfd, monkeypatch
):
    """Two processes on one machine, one restart: process 1 dies after step 5 (the restart resumes from step 4),
    then process 0, the one that writes, after step 9 (no restart left: the run stops, last.pt of step 8 whole).
    Resumed by two processes, it ends with the weights of the two machines' run, bit for bit; by one, each step
    takes the same 16 images: the same weights, to float rounding."""
    from vggspec.run.train import train

    uninterrupted = Path(across_two_machines[0].out)
    cfg = tiny_config(tmp_path, shapes, nproc=2, max_restarts=1, **RECIPE)
    run_dir, last = Path(cfg.out), Path(cfg.out) / "last.pt"
    result = run(cli_args(cfg), VGGSPEC_TEST_FAULT_AT="1:5,0:9:2")
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


# -- vggspec's own --nnodes: the flags -----------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"), [("2", "2"), (" 1:2 ", "1:2"), ("3:3", "3"), ("4", "4")]
)  # fmt: skip
def test_nnodes_takes_a_count_or_a_range(given, kept):
    from vggspec.run.rendezvous import Machines, machines

    cfg = TrainConfig(spec="A", data="d", out="o", nnodes=given, rdzv_endpoint="node1")
    assert cfg.nnodes == kept and cfg.rdzv_endpoint == "node1:29400"
    low, _, high = kept.partition(":")
    assert machines(cfg) == Machines(int(low), int(high or low), "node1:29400", 600)


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--nnodes", "2:1"], "--nnodes takes N or MIN:MAX (e.g. 2, or 1:2), not '2:1'"),
        (["--nnodes", "two"], "--nnodes takes N or MIN:MAX (e.g. 2, or 1:2), not 'two'"),
        (["--nnodes", "2", "--rdzv-endpoint", "node1:99999"], "--rdzv-endpoint takes HOST:PORT (e.g. node1:29400)"),
        (["--nnodes", "2"], "error: --nnodes 2 needs --rdzv-endpoint HOST:PORT: where the machines meet"),
        (["--rdzv-endpoint", "node1"], "error: --rdzv-endpoint is where several machines meet: give --nnodes too"),
        (["--nnodes", "2", "--rdzv-endpoint", "node1", "--out", ""], "error: with --nnodes, give --out RUN"),
    ],
)
def test_a_rendezvous_half_given_is_one_line_before_anything_starts(flags, said, tmp_path, shapes):
    cfg = tiny_config(tmp_path, shapes, text=SMALL_SPEC, epochs=1)
    result = run([*cli_args(cfg), *flags])
    assert result.returncode == 2, result.stderr
    assert said in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not Path(cfg.out).exists()


def test_under_torchrun_the_machines_are_torchruns(monkeypatch):
    from vggspec.errors import SpecError
    from vggspec.run.distributed import launch
    from vggspec.run.rendezvous import Machines

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SpecError, match="under torchrun, the machines are torchrun's"):
        launch(print, {}, world=1, machines=Machines(2, 2, "node1:29400"))
