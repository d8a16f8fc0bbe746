"""Everything no test has run on a GPU, in one script for the day a CUDA machine is at hand.

On a machine with one or more CUDA GPUs it runs, each on a narrow spec (small/D-narrow-32-bn) and a
generated folder of shapes (a few steps each):

* ``vggspec train --gpus N`` (DDP over NCCL; N = every GPU), and ``--sync-bn`` (needs 2 GPUs);
* fp16 and bf16 autocast on CUDA (bf16 where the GPU has it), and channels-last on cuDNN;
* ``vggspec evaluate --gpus N`` on the run just trained;
* the training budget's peak (``vggspec analyze --train``) against ``torch.cuda.max_memory_allocated``
  for D at two batch sizes (within 5 %, the tests' tolerance against MemTracker);
* a training step of D against torchvision's vgg16 with the same weights and settings (images/s;
  vggspec at least 0.97× torchvision's, as ``tools/bench_train.py`` asks on the CPU);

and prints one table, a pass or fail per line. About 3–5 minutes on one GPU (under 8). Where there is
no GPU it says so plainly and exits 0: nothing was checked.

    python tools/gpu_check.py                # every check
    python tools/gpu_check.py --keep DIR     # keep the generated data and the runs in DIR

Exit codes: 0 every check passed (or no GPU: nothing to check), 1 a check failed.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # check this checkout, installed or not

NARROW = "small/D-narrow-32-bn"
MEMORY_TOLERANCE = 0.05  # the budget against the allocator's peak, as the tests hold it against MemTracker
SPEED_GOAL = 0.97  # vggspec's images/s over torchvision's, as tools/bench_train.py asks on the CPU
TRAIN_TIMEOUT = 300  # seconds for one training or evaluation command


class Check(NamedTuple):
    """One line of the table: what was checked, whether it passed (None: not run, and why), the numbers."""

    name: str
    passed: bool | None
    detail: str


# -- the parts that need no GPU (tests/test_gpu_check.py runs them) ---------------------------------


def compare_peak(name: str, estimate: int, measured: int, tolerance: float = MEMORY_TOLERANCE) -> Check:
    """The budget's peak against the allocator's: passed within ``tolerance`` of the measurement."""
    error = (estimate - measured) / measured
    detail = f"budget {estimate / 2**30:.3f} GiB, max_memory_allocated {measured / 2**30:.3f} GiB ({error:+.1%})"
    return Check(name, abs(error) <= tolerance, detail)


def compare_speed(name: str, ours: float, theirs: float, goal: float = SPEED_GOAL) -> Check:
    """vggspec's images/s against torchvision's: passed at ``goal`` of theirs or more."""
    return Check(name, ours >= goal * theirs, f"{ours:.1f} vs {theirs:.1f} images/s ({ours / theirs:.2f}×)")


def command_check(name: str, command: Sequence[str], run: Callable[..., subprocess.CompletedProcess]) -> Check:
    """A vggspec command that must exit 0; its last line of output as the detail (the error's, on failure)."""
    started = time.perf_counter()
    try:
        result = run(list(command), capture_output=True, text=True, timeout=TRAIN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return Check(name, False, f"did not finish in {TRAIN_TIMEOUT} s")
    lines = (result.stderr or result.stdout).strip().splitlines()
    last = lines[-1] if lines else ""
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        return Check(name, False, f"exit {result.returncode}: {last[:160]}")
    return Check(name, True, f"{seconds:.0f} s")


def needs(gpus: int, wanted: int, name: str) -> Check | None:
    """A not-run line when the machine has fewer GPUs than a check needs."""
    if gpus >= wanted:
        return None
    return Check(name, None, f"needs {wanted} GPUs, this machine has {gpus}")


def table(checks: Sequence[Check]) -> str:
    """The checks as one table: pass, FAIL, or - (not run), and the numbers."""
    width = max(len(c.name) for c in checks)
    verdict = {True: "pass", False: "FAIL", None: "-"}
    lines = [f"{'check':<{width}}  result  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{c.name:<{width}}  {verdict[c.passed]:<6}  {c.detail}" for c in checks]
    failed = sum(c.passed is False for c in checks)
    ran = sum(c.passed is not None for c in checks)
    lines.append(f"\n{ran - failed} of {ran} checks passed" + (f", {failed} FAILED" if failed else ""))
    return "\n".join(lines)


def exit_code(checks: Sequence[Check]) -> int:
    return 1 if any(c.passed is False for c in checks) else 0


# -- the checks on a GPU -------------------------------------------------------------------------------


def vggspec_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "vggspec", *args]


def narrow_spec(work: Path, classes: int) -> Path:
    """The narrow spec with a classifier for ``classes`` classes, written into ``work``."""
    text = (ROOT / "specs" / f"{NARROW}.vgg").read_text(encoding="utf-8")
    path = work / f"{Path(NARROW).name}-{classes}.vgg"
    path.write_text(text.replace("FC-10", f"FC-{classes}"), encoding="utf-8")
    return path


def folder(name: str) -> str:
    """A check's run folder: its name in lower-case words and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def training_checks(work: Path, gpus: int, bf16: bool) -> list[Check]:
    """The trainer's GPU paths on the narrow spec: a few steps each (one epoch of a small folder)."""
    from vggspec.data.samples import image_folder

    data = image_folder(work / "shapes", classes=4, train=64, val=16, size=48)
    spec = narrow_spec(work, classes=4)
    common = ["--data", str(data), "--epochs", "1", "--batch-size", "16", "--workers", "2", "--no-progress"]
    runs = work / "runs"

    def train(name: str, *flags: str) -> Check:
        command = vggspec_command("train", str(spec), *common, "--out", str(runs / folder(name)), *flags)
        return command_check(name, command, subprocess.run)

    checks = [
        train(f"train --gpus {gpus} (NCCL)" if gpus > 1 else "train --gpus 1", "--gpus", str(gpus)),
        needs(gpus, 2, "train --gpus 2 --sync-bn") or train("train --gpus 2 --sync-bn", "--gpus", "2", "--sync-bn"),
        train("train --amp fp16", "--gpus", "1", "--amp", "fp16"),
        train("train --amp bf16", "--gpus", "1", "--amp", "bf16")
        if bf16
        else Check("train --amp bf16", None, "this GPU has no bfloat16"),
        train("train --channels-last (cuDNN)", "--gpus", "1", "--channels-last"),
        train("train --micro-batch auto", "--gpus", "1", "--micro-batch", "auto"),
    ]
    first = runs / folder(checks[0].name)
    evaluate = vggspec_command("evaluate", str(first), "--data", str(data), "--gpus", str(gpus), "--no-progress")
    checks.append(command_check(f"evaluate --gpus {gpus}", evaluate, subprocess.run))
    return checks


def memory_checks(batches: Sequence[int]) -> list[Check]:
    """The budget's peak for D against the allocator's, at each batch size."""
    from measured import cuda_step_peak

    import vggspec
    from vggspec.plan.budget import TrainSettings, train_budget

    spec = vggspec.load("D")
    checks = []
    for batch in batches:
        estimate = train_budget(spec, TrainSettings(batch=batch)).peak_bytes
        checks.append(compare_peak(f"budget peak, D at batch {batch}", estimate, cuda_step_peak(spec, batch)))
    return checks


def speed_check(batch: int, amp: str | None, rounds: int = 10) -> Check:
    """A training step of D against torchvision's vgg16 with the same weights: images/s, median of rounds."""
    import torch
    import torchvision

    import vggspec

    device = torch.device("cuda")
    reference = torchvision.models.vgg16().to(device)
    ours = vggspec.build(vggspec.load("D"), weights=reference.state_dict(), device=device)
    images = torch.randn(batch, 3, 224, 224, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def stepper(model: torch.nn.Module) -> Callable[[], None]:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)

        def step() -> None:
            with torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16, enabled=bool(amp)):
                loss = torch.nn.functional.cross_entropy(model(images).float(), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step

    steps = {"vggspec": stepper(ours.train()), "torchvision": stepper(reference.train())}
    for step in steps.values():  # warm-up: cuDNN's algorithm choice, the momentum buffers
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(rounds):
        for name in list(steps)[:: 1 if round_ % 2 else -1]:  # alternating order
            torch.cuda.synchronize()
            started = time.perf_counter()
            steps[name]()
            torch.cuda.synchronize()
            times[name].append(time.perf_counter() - started)
    speed = {name: batch / statistics.median(t) for name, t in times.items()}
    label = f"training step of D vs torchvision vgg16 (batch {batch}, {amp or 'float32'})"
    return compare_speed(label, speed["vggspec"], speed["torchvision"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", metavar="DIR", help="keep the generated data and the runs in DIR")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("no GPU check: PyTorch is not installed (pip install 'vggspec[torch]')")
        return 0
    if not torch.cuda.is_available():
        print("no GPU present (torch.cuda.is_available() is False): nothing was checked")
        return 0
    gpus = torch.cuda.device_count()
    bf16 = torch.cuda.is_bf16_supported()
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(gpus))
    print(f"{gpus} GPU{'s' if gpus > 1 else ''}: {names}; torch {torch.__version__}, CUDA {torch.version.cuda}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.keep or scratch)
        work.mkdir(parents=True, exist_ok=True)
        checks = training_checks(work, gpus, bf16)
    checks += memory_checks((16, 64))
    checks.append(speed_check(32, "bf16" if bf16 else "fp16"))
    print(table(checks))
    print(f"({time.perf_counter() - started:.0f} s)")
    return exit_code(checks)


if __name__ == "__main__":
    sys.exit(main())
