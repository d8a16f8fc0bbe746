"""The inference fast path returns the model's scores, on plain and dense models; no timings here."""

import json

import pytest

torch = pytest.importorskip("torch")

import vggspec  # noqa: E402
from vggspec.nn.dense import to_dense  # noqa: E402
from vggspec.nn.inference import (  # noqa: E402
    InferenceModel,
    bf16_supported,
    optimize_for_inference,
    resolve_dtype,
)

SMALL = "input: 32x32 RGB\nconv3-8\nmaxpool\nconv3-16 [bn]\nmaxpool\nFC-32\nFC-10"


@pytest.fixture(scope="module")
def model() -> vggspec.VGG:
    """The small network with non-trivial batch-norm statistics (so folding them is tested)."""
    net = vggspec.build(vggspec.parse(SMALL), init="kaiming", seed=0)
    generator = torch.Generator().manual_seed(1)
    bn = net.features.conv2_1.bn
    with torch.no_grad():
        bn.running_mean.normal_(0, 0.5, generator=generator)
        bn.running_var.uniform_(0.5, 2.0, generator=generator)
        bn.weight.uniform_(0.5, 1.5, generator=generator)
        bn.bias.normal_(0, 0.1, generator=generator)
    return net.eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def reference(model: vggspec.VGG, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images)


def assert_bf16_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """bf16 keeps 8 significant bits (relative rounding 2^-8 ≈ 0.4 %) per operation."""
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=0.05, atol=0.05 * scale)
    # Same top-1 wherever the fp32 winner is not a near-tie.
    top2 = expected.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.05 * scale
    assert clear.any()
    assert torch.equal(actual.argmax(1)[clear], expected.argmax(1)[clear])


def test_fp32_fast_path_equals_model(model, images):
    fast = optimize_for_inference(model, dtype=torch.float32)
    assert isinstance(fast, InferenceModel)
    assert fast.dtype == torch.float32 and fast.channels_last and not fast.compiled
    out = fast(images)
    assert out.dtype == torch.float32 and out.shape == (6, 10)
    torch.testing.assert_close(out, reference(model, images), rtol=1e-5, atol=1e-5)
    out.add_(1)  # an ordinary tensor, not an inference-mode one


def test_inplace_converts_the_model_itself(model, images):
    """No second copy of the weights: the wrapper holds the model it was given, converted."""
    import copy

    own = copy.deepcopy(model)
    fast = optimize_for_inference(own, dtype="bfloat16", inplace=True)
    assert fast.model is own and own.features.conv1_1.conv.weight.dtype == torch.bfloat16
    assert isinstance(own.features.conv2_1.bn, torch.nn.Identity)  # folded in the model itself
    assert torch.equal(fast(images), optimize_for_inference(model, dtype="bfloat16")(images))


def test_fast_path_leaves_model_untouched(model, images):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    training = model.training
    fast = optimize_for_inference(model, dtype="bfloat16")
    fast(images)
    assert model.training == training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.features.conv1_1.conv.weight.is_contiguous()
    assert isinstance(model.features.conv2_1.bn, torch.nn.BatchNorm2d)  # folded in the copy only
    assert isinstance(fast.model.features.conv2_1.bn, torch.nn.Identity)


def test_eval_mode_even_for_a_training_model(model, images):
    model.train()
    try:
        fast = optimize_for_inference(model, dtype=None)
    finally:
        model.eval()
    torch.testing.assert_close(fast(images), reference(model, images), rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="cannot be trained"):
        fast.train()


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("fold", [True, False])
def test_each_ingredient_alone(model, images, channels_last, fold):
    fast = optimize_for_inference(model, dtype=torch.float32, channels_last=channels_last, fold_batch_norm=fold)
    torch.testing.assert_close(fast(images), reference(model, images), rtol=1e-5, atol=1e-5)


def test_explicit_bf16_is_close(model, images):
    """Asked for explicitly, bf16 runs on any CPU (emulated without native support) and is close."""
    fast = optimize_for_inference(model, dtype=torch.bfloat16)
    assert fast.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in fast.model.parameters())
    out = fast(images)
    assert out.dtype == torch.float32  # scores come back in the model's dtype
    assert_bf16_close(out, reference(model, images))


def test_auto_picks_bf16_only_where_faster(model, images):
    from vggspec.nn.inference import bf16_faster

    fast = optimize_for_inference(model)  # dtype="auto"
    expected = torch.bfloat16 if bf16_faster("cpu") else torch.float32
    assert bf16_supported("cpu") or expected == torch.float32  # never emulated bf16
    assert fast.dtype == expected
    if expected == torch.float32:
        torch.testing.assert_close(fast(images), reference(model, images), rtol=1e-5, atol=1e-5)
    else:
        assert_bf16_close(fast(images), reference(model, images))


@pytest.mark.parametrize("isa", ["AVX2", "avx512_core"])
def test_auto_picks_fp32_when_onednn_may_not_use_bf16(model, images, monkeypatch, isa):
    """Capped below AVX512_CORE_BF16, oneDNN emulates bf16 (slower than fp32): auto stays fp32."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert not bf16_supported("cpu")
    fast = optimize_for_inference(model)
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast(images), reference(model, images), rtol=1e-5, atol=1e-5)


def test_bf16_supported_answers_for_devices():
    assert isinstance(bf16_supported(), bool)
    assert bf16_supported("cpu") == bf16_supported(None)
    assert bf16_supported("meta") is False
    if not torch.cuda.is_available():
        assert bf16_supported("cuda") is False


def test_resolve_dtype():
    assert resolve_dtype(None) == torch.float32
    assert resolve_dtype("bf16") == torch.bfloat16
    assert resolve_dtype("float32") == torch.float32
    assert resolve_dtype(torch.float16) == torch.float16
    assert resolve_dtype("auto", "meta") == torch.float32
    assert resolve_dtype("auto", "cpu", default=torch.float64) == torch.float64
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8")
    with pytest.raises(ValueError, match="floating-point"):
        resolve_dtype(torch.int32)


def test_dense_model_on_a_larger_input(model):
    dense = to_dense(model).eval()
    images = torch.randn(2, 3, 48, 40, generator=torch.Generator().manual_seed(3))
    expected = reference(dense, images)
    assert expected.shape == (2, 10, 5, 3)  # 48×40 → 12×10 after two pools → 8×8 fc3
    fast = optimize_for_inference(dense, dtype=torch.float32)
    torch.testing.assert_close(fast(images), expected, rtol=1e-5, atol=1e-5)
    assert_bf16_close(
        optimize_for_inference(dense, dtype=torch.bfloat16)(images).permute(0, 2, 3, 1).reshape(-1, 10),
        expected.permute(0, 2, 3, 1).reshape(-1, 10),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "shape", [(2, 3, 64, 64), (2, 1, 32, 32), (3, 32, 32), (2, 3, 32, 32, 1)], ids=["size", "channels", "3d", "5d"]
)
def test_wrong_input_size_still_raises(model, dtype, shape):
    fast = optimize_for_inference(model, dtype=dtype)
    with pytest.raises(vggspec.InputSizeError):
        fast(torch.zeros(shape))


def test_dense_wrong_input_raises(model):
    fast = optimize_for_inference(to_dense(model), dtype=torch.float32)
    with pytest.raises(vggspec.InputSizeError):
        fast(torch.zeros(1, 3, 16, 16))


def test_rejects_other_modules_and_meta_models():
    with pytest.raises(TypeError, match="VGG"):
        optimize_for_inference(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="meta"):
        optimize_for_inference(vggspec.build(vggspec.parse(SMALL), device="meta"))


def test_state_dict_holds_the_weights_once(model):
    keys = list(optimize_for_inference(model, dtype=torch.float32).state_dict())
    assert keys and all(key.startswith("model.") for key in keys)


def test_compiled_fast_path_checks_inputs_before_compiling(model):
    """The check runs eagerly, outside the compiled graph (compiling itself is too slow to test here)."""
    fast = optimize_for_inference(model, dtype=torch.float32, compile=True)
    assert fast.compiled
    with pytest.raises(vggspec.InputSizeError):
        fast(torch.zeros(2, 3, 64, 64))


def test_auto_measures_whether_bf16_is_faster_on_this_cpu_once(monkeypatch, tmp_path):
    """bf16 instructions are not enough (an EPYC with AVX512-BF16 and no AMX ran VGG-11 at 0.92× fp32's
    speed): auto measures, once per CPU, torch version and thread count, and keeps the answer."""
    from vggspec.nn import inference

    monkeypatch.setenv("VGGSPEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(inference, "_cpu_has_native_bf16", lambda: True)
    measured = []

    def probe(times):
        def run():
            measured.append(times)
            return times

        return run

    monkeypatch.setattr(inference, "_probe_times", probe((0.010, 0.0095)))  # bf16 barely faster: not enough
    assert resolve_dtype("auto", "cpu") == torch.float32 and len(measured) == 1
    assert resolve_dtype("auto", "cpu") == torch.float32 and len(measured) == 1  # kept, not measured again
    (entry,) = json.loads(inference.probe_cache_path().read_text()).values()
    assert entry == {"fp32_ms": 10.0, "bf16_ms": 9.5, "bf16_faster": False}

    monkeypatch.setattr(torch, "__version__", "9.9.9")  # another torch: measured again
    monkeypatch.setattr(inference, "_probe_times", probe((0.010, 0.004)))
    assert resolve_dtype("auto", "cpu") == torch.bfloat16 and len(measured) == 2
    assert len(json.loads(inference.probe_cache_path().read_text())) == 2

    monkeypatch.setattr(inference, "_cpu_has_native_bf16", lambda: False)  # emulated bf16: never measured
    assert resolve_dtype("auto", "cpu") == torch.float32 and len(measured) == 2
    inference.probe_cache_path().write_text("{not json")  # a damaged cache is measured again, not an error
    monkeypatch.setattr(inference, "_cpu_has_native_bf16", lambda: True)
    assert resolve_dtype("auto", "cpu") == torch.bfloat16 and len(measured) == 3


def test_without_a_home_the_probe_measures_and_keeps_nothing(monkeypatch, tmp_path):
    """HOME unset in a container whose user has no passwd entry: Path.home() raises; auto measures, caches
    nothing, and answers (it died with "Could not determine home directory")."""
    from vggspec.nn import inference

    for name in ("VGGSPEC_CACHE", "XDG_CACHE_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("os.path.expanduser", lambda path: path)  # what expanduser does without HOME or passwd
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(inference, "_cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(inference, "_probe_times", lambda: (0.010, 0.004))
    assert inference.probe_cache_path() is None
    assert resolve_dtype("auto", "cpu") == torch.bfloat16
    assert not list(tmp_path.rglob("*"))  # no cache written anywhere it could reach


def test_the_probe_measures_both_dtypes():
    from vggspec.nn.inference import _probe_times

    fp32, bf16 = _probe_times()
    assert 0 < fp32 < 5 and 0 < bf16 < 50


# -- torch.compile, which may fail: Compiled ---------------------------------------------------


@pytest.fixture
def compile_failures_said(monkeypatch):
    """A fresh record of the failures said (each reason is said once per process)."""
    from vggspec.nn import inference

    said: set[str] = set()
    monkeypatch.setattr(inference, "_COMPILE_FAILURES_SAID", said)
    return said


def test_a_torch_compile_that_cannot_start_is_one_warning_and_the_model_runs_uncompiled(
    model, images, monkeypatch, capsys, compile_failures_said
):
    """torch.compile refusing at once (a platform or Python dynamo does not support): one line, no traceback,
    and the scores the model gives uncompiled, through the fast path too."""
    from vggspec.nn.inference import Compiled

    def refuse(*args, **kwargs):
        raise RuntimeError("Windows not yet supported for torch.compile\nmore lines torch might add")

    monkeypatch.setattr(torch, "compile", refuse)
    capsys.readouterr()
    wrapped = Compiled(model)
    assert not wrapped.compiled
    torch.testing.assert_close(wrapped(images), reference(model, images))
    fast = optimize_for_inference(model, dtype=torch.float32, compile=True)  # the same reason: not said again
    assert not fast.compiled
    torch.testing.assert_close(fast(images), reference(model, images))
    err = capsys.readouterr().err
    assert err == (
        "warning: torch.compile failed (RuntimeError: Windows not yet supported for torch.compile); "
        "running uncompiled\n"
    )


def test_a_compile_failing_at_the_first_call_falls_back_once_and_a_models_own_error_is_not_hidden(
    model, images, monkeypatch, capsys, compile_failures_said
):
    """Most failures come at the first call, where torch compiles (no C compiler: inductor's error): said once,
    and the model runs uncompiled from then on. An error that is not torch failing to compile goes through."""
    from torch._inductor.exc import InvalidCxxCompiler

    from vggspec.nn.inference import Compiled

    calls = []

    def compiled_that_fails(module, **kwargs):
        def run(*args):
            calls.append(args)
            raise InvalidCxxCompiler("g++")

        return run

    monkeypatch.setattr(torch, "compile", compiled_that_fails)
    capsys.readouterr()
    wrapped = Compiled(model, backward=True)
    assert wrapped.compiled
    with torch.no_grad():
        torch.testing.assert_close(wrapped(images), reference(model, images))
        torch.testing.assert_close(wrapped(images), reference(model, images))
    assert len(calls) == 1 and not wrapped.compiled and wrapped.first_call_seconds is None
    assert capsys.readouterr().err == (
        "warning: torch.compile failed (InvalidCxxCompiler: Compiler: g++ is not found.); running uncompiled\n"
    )

    def model_error(module, **kwargs):
        def run(*args):
            raise ValueError("the model's own")

        return run

    monkeypatch.setattr(torch, "compile", model_error)
    with pytest.raises(ValueError, match="the model's own"):
        Compiled(model)(images)
    assert capsys.readouterr().err == ""


def test_compiled_holds_the_module_and_says_how_long_the_first_call_took(model, images, monkeypatch):
    """The parameters are the module's (DDP wraps it as the module), the compiled wrapper is no submodule (no
    ``_orig_mod.`` keys), and the first call's time is told once."""
    from vggspec.nn.inference import Compiled

    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: module)  # compiling itself: tests of its own
    told = []
    wrapped = Compiled(model, on_first_call=told.append)
    names = [name for name, _ in model.named_parameters()]
    assert [name for name, _ in wrapped.named_parameters()] == [f"module.{name}" for name in names]
    assert all(key.startswith("module.") and "_orig_mod" not in key for key in wrapped.state_dict())
    with torch.no_grad():
        wrapped(images)
        wrapped(images)
    assert len(told) == 1 and told[0] == wrapped.first_call_seconds > 0
