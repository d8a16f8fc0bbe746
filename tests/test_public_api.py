"""The public API: a user's script written against vggspec before its modules moved into rooms runs
unchanged, and `import vggspec` imports no torch."""

import subprocess
import sys
import textwrap

import pytest

from .conftest import ROOT, TINY_SPEC

pytest.importorskip("torch", reason="needs the test extras: pip install -e '.[test]'")

# A script as the README of the flat package taught it: every name from where it lived then.
OLD_SCRIPT = """
import sys
import vggspec
from vggspec.config import EvaluateConfig, TrainConfig
from vggspec.errors import ExitCode, SpecError
from vggspec.evaluate import evaluate
from vggspec.spec import InputShape, Spec
from vggspec.train import train
import vggspec.samples

spec = vggspec.parse({text!r}, filename="tiny.vgg")
assert isinstance(spec, Spec) and isinstance(spec.input, InputShape)
assert vggspec.analyze(vggspec.load("D")).params == 138_357_544
model = vggspec.build(spec, init="kaiming", seed=0)
vggspec.save_checkpoint(model, {out!r} + "/tiny.pt")
again = vggspec.load_model({out!r} + "/tiny.pt")
vggspec.export_model(again, {out!r} + "/tiny.py", "python")
dense = vggspec.to_dense(again)
assert callable(vggspec.dense.posteriors)
data = vggspec.samples.image_folder({out!r} + "/shapes", classes=3, train=16, val=6, size=20)
with open({out!r} + "/tiny.vgg", "w") as f:
    f.write({text!r})
run = train(TrainConfig(spec={out!r} + "/tiny.vgg", data=str(data), out={out!r} + "/run", epochs=1,
                        batch_size=16, init="kaiming", normalise="mean", workers=0, progress=False))
results = evaluate(EvaluateConfig(checkpoints=[str(run)], data=str(data), split="val"))
assert results is not None and ExitCode.OK == 0
try:
    vggspec.parse("conv3-64 maxpool")
except SpecError as err:
    assert err.line == 1
print("ok")
"""


def test_a_script_written_against_the_flat_package_runs_unchanged(tmp_path):
    code = textwrap.dedent(OLD_SCRIPT).format(text=TINY_SPEC, out=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_old_module_names_are_the_moved_modules():
    import vggspec.compiler
    import vggspec.config

    import vggspec
    from vggspec.nn import compiler
    from vggspec.run import config

    assert vggspec.config.TrainConfig is config.TrainConfig
    assert vggspec.compiler.build is compiler.build is vggspec.build
    with pytest.raises(AttributeError):
        vggspec.config.NoSuchName  # noqa: B018
    with pytest.raises(ModuleNotFoundError):
        import vggspec.no_such_module  # noqa: F401


def test_import_vggspec_imports_no_torch():
    code = "import sys, vggspec, vggspec.spec, vggspec.plan, vggspec.data, vggspec.nn, vggspec.run\n"
    code += "vggspec.analyze(vggspec.load('E'))\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False"]
