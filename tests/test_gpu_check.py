"""tools/gpu_check.py: the parts that need no GPU (its comparisons, its table, its exit code), and
that it says plainly when there is no GPU to check."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from .conftest import ROOT

SCRIPT = ROOT / "tools" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_peak_within_five_percent_passes(gpu_check):
    assert gpu_check.compare_peak("D", 104, 100).passed
    assert gpu_check.compare_peak("D", 96, 100).passed
    check = gpu_check.compare_peak("D", 106 * 2**20, 100 * 2**20)
    assert check.passed is False and "+6.0%" in check.detail


def test_speed_at_97_percent_of_torchvisions_passes(gpu_check):
    assert gpu_check.compare_speed("step", 97.0, 100.0).passed
    assert gpu_check.compare_speed("step", 96.0, 100.0).passed is False


def test_a_command_passes_on_exit_0_and_fails_with_its_last_line(gpu_check):
    ok = gpu_check.command_check("true", [sys.executable, "-c", "pass"], subprocess.run)
    assert ok.passed
    code = "import sys; print('first', file=sys.stderr); print('the error', file=sys.stderr); sys.exit(2)"
    failed = gpu_check.command_check("fails", [sys.executable, "-c", code], subprocess.run)
    assert failed.passed is False and failed.detail == "exit 2: the error"


def test_the_table_says_pass_fail_and_not_run(gpu_check):
    checks = [
        gpu_check.Check("a", True, "12 s"),
        gpu_check.Check("b", False, "exit 1: boom"),
        gpu_check.needs(1, 2, "sync-bn"),
    ]
    text = gpu_check.table(checks)
    rows = text.splitlines()
    assert rows[2].split()[:2] == ["a", "pass"] and rows[3].split()[:2] == ["b", "FAIL"]
    assert rows[4].split()[:2] == ["sync-bn", "-"] and "needs 2 GPUs, this machine has 1" in rows[4]
    assert "1 of 2 checks passed, 1 FAILED" in text
    assert gpu_check.exit_code(checks) == 1 and gpu_check.exit_code(checks[:1] + checks[2:]) == 0
    assert gpu_check.needs(2, 2, "sync-bn") is None


def test_run_folders_are_plain_names(gpu_check):
    assert gpu_check.folder("train --gpus 2 (NCCL)") == "train-gpus-2-nccl"


def test_without_a_gpu_it_says_so_and_exits_0():
    torch = pytest.importorskip("torch")
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=600)
    if torch.cuda.is_available():  # a GPU machine runs the checks: the table is there, pass or fail
        assert "checks passed" in result.stdout
    else:
        assert result.returncode == 0 and "no GPU present" in result.stdout
