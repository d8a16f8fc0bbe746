"""The training budget (vggspec.budget) against PyTorch's own accounting.

Memory: ``torch.distributed._tools.mem_tracker.MemTracker`` follows every tensor of a training step of
the built module run under ``FakeTensorMode`` (no memory is touched, no arithmetic done) on the CPU,
as the trainer runs it: SGD with momentum and weight decay, a step taken first so that the momentum
buffers exist, then the measured step; the loss ``cross_entropy(scores.float(), labels)``; autocast
and channels-last as the trainer applies them. The budget under the CPU's allocation rules must
match its peak and every category within 5 %. Fake CUDA tensors cannot run a backward pass without a
GPU (pytorch/pytorch#92627), so the CUDA rules are held to ``torch.cuda.max_memory_allocated`` only
where a GPU is present.
"""

from __future__ import annotations

import math
import time

import pytest

import vggspec
from vggspec.errors import SpecError
from vggspec.plan.budget import (
    IMAGENET_TRAIN_IMAGES,
    TrainSettings,
    parse_flops,
    parse_size,
    plan,
    time_bound,
    train_budget,
)
from vggspec.plan.gpus import GPUS, gpu, rates
from vggspec.spec.tape import CUDA, DTYPE_BYTES, Category

TOLERANCE = 0.05  # the issue's: within 5 % of PyTorch's accounting
SMALL = 16 * 1024  # bytes: a category this small may differ by a few scalars


def close(estimate: int, measured: int) -> bool:
    return abs(estimate - measured) <= max(TOLERANCE * measured, SMALL)


# -- the measurement: vggspec.measured ---------------------------------------------------------------


def measure(name: str, share: int, *, amp: bool = False, **options) -> dict[str, dict[str, int]]:
    pytest.importorskip("torch")
    from measured import tracked_step

    return tracked_step(vggspec.load(name), share, amp="bf16" if amp else None, **options)


CASES = [
    *[
        (net, batch, False, False)
        for net, batches in (("A", (1, 8, 64)), ("D", (1, 8, 64)), ("E", (1, 8, 64)))
        for batch in batches
    ],
    ("D", 8, True, False),
    ("D", 8, False, True),
    ("D", 1, True, True),
    ("D", 64, True, True),
    ("A", 8, True, True),
    ("E", 64, True, True),
    *[("small/D-narrow-32-bn", 8, amp, cl) for amp in (False, True) for cl in (False, True)],
    ("small/D-narrow-32-bn", 1, True, True),
    *[("A-LRN", 8, amp, cl) for amp in (False, True) for cl in (False, True)],
]


def _id(case) -> str:
    name, batch, amp, cl = case
    return f"{name}-b{batch}{'-bf16' if amp else ''}{'-cl' if cl else ''}"


def _check(budget, measured: dict[str, dict[str, int]]) -> None:
    start, forward, backward, peak = (measured[k] for k in ("start", "forward", "backward", "peak"))
    assert budget.weights_bytes == start["Parameter"]
    assert budget.buffers_bytes == start["Buffer"]
    assert budget.optimizer_bytes == start["Optstate"]  # the momentum buffers
    assert budget.inputs_bytes == start["Other"]  # images and labels
    assert close(budget.activations_bytes, forward["Activation"]), (budget.activations_bytes, forward)
    assert close(budget.gradients_bytes, backward["Gradient"]), (budget.gradients_bytes, backward)
    assert abs(budget.peak_bytes - peak["Total"]) <= TOLERANCE * peak["Total"], (budget.peak_bytes, peak)
    for category in Category:  # what is alive at the peak, category by category
        assert close(budget.peak_categories[category], peak[category.value]), (category, budget.peak_categories, peak)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_the_step_memory_matches_memtracker(case):
    name, batch, amp, channels_last = case
    settings = TrainSettings(batch=batch, amp="bf16" if amp else None, channels_last=channels_last, device="cpu")
    _check(train_budget(vggspec.load(name), settings), measure(name, batch, amp=amp, channels_last=channels_last))


@pytest.mark.parametrize(
    "name, batch, micro, amp", [("D", 8, 4, True), ("small/D-narrow-32-bn", 8, 3, False)], ids=["D-bf16", "bn"]
)
def test_accumulated_micro_batches_match_memtracker(name, batch, micro, amp):
    """From the second micro-batch on the gradients are there during the forward pass, and each new
    one is added into them."""
    settings = TrainSettings(batch=batch, micro_batch=micro, amp="bf16" if amp else None, device="cpu")
    budget = train_budget(vggspec.load(name), settings)
    assert budget.settings.accumulation == math.ceil(batch / micro)
    _check(budget, measure(name, batch, micro=micro, amp=amp))


def test_the_foreach_optimizer_step_matches_memtracker():
    """CUDA's default: SGD's weight decay makes a new tensor for every parameter at once, so at batch 1
    the step's peak is in the optimizer (on the CPU, one parameter at a time: fc6's alone)."""
    one_by_one = train_budget(vggspec.load("D"), TrainSettings(batch=1, device="cpu"))
    settings = TrainSettings(batch=1, device="cpu", foreach=True)
    budget = train_budget(vggspec.load("D"), settings)
    assert budget.peak_at == one_by_one.peak_at == "optimizer step"
    assert budget.peak_bytes - one_by_one.peak_bytes == budget.weights_bytes - 25088 * 4096 * 4  # all but fc6's
    _check(budget, measure("D", 1, foreach=True))


@pytest.mark.parametrize(
    "name, batch, channels_last",
    [
        ("D", 8, False),
        ("D", 3, True),
        ("small/D-narrow-32-bn", 8, False),
        ("small/D-narrow-32-bn", 3, True),
        ("A-LRN", 4, False),
    ],
)
def test_the_cuda_rules_forward_matches_memtracker_on_fake_cuda_tensors(name, batch, channels_last):
    """Without a GPU, fake CUDA tensors run the forward pass as CUDA would (native_dropout's bool mask,
    cuDNN's float32 batch-norm statistics, 512-byte blocks): what it keeps for the backward (to the byte
    with torch 2.14)."""
    pytest.importorskip("torch")
    from measured import tracked_forward

    measured = tracked_forward(vggspec.load(name), batch, device="cuda", channels_last=channels_last)
    budget = train_budget(vggspec.load(name), TrainSettings(batch=batch, channels_last=channels_last))
    assert budget.settings.device == "cuda"
    assert budget.weights_bytes == measured["Parameter"] and budget.buffers_bytes == measured["Buffer"]
    assert budget.inputs_bytes == measured["Other"]
    assert close(budget.activations_bytes, measured["Activation"]), (budget.activations_bytes, measured)


def test_fused_dropout_keeps_a_bool_mask():
    """The CUDA rule (native_dropout, what at::dropout takes on a GPU) read off the op itself."""
    torch = pytest.importorskip("torch")
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        out, mask = torch.ops.aten.native_dropout(torch.empty(4, 8, dtype=torch.bfloat16), 0.5, True)
    assert out.dtype == torch.bfloat16 and mask.dtype == torch.bool
    assert CUDA.fused_dropout and DTYPE_BYTES["bool"] == mask.element_size()


@pytest.mark.skipif(
    not pytest.importorskip("torch").cuda.is_available(), reason="needs a GPU: torch.cuda.max_memory_allocated"
)
@pytest.mark.parametrize("batch, amp", [(8, None), (32, "bf16")])
def test_the_step_memory_matches_a_gpu(batch, amp):
    """On a GPU: the CUDA rules against what the caching allocator handed out at the step's peak."""
    from measured import cuda_step_peak

    spec = vggspec.load("D")
    measured = cuda_step_peak(spec, batch, amp=amp)
    estimate = train_budget(spec, TrainSettings(batch=batch, amp=amp)).peak_bytes
    assert abs(estimate - measured) <= TOLERANCE * measured, (estimate, measured)


# -- FLOPs ------------------------------------------------------------------------------------------


def test_the_step_flops_are_the_analysis_times_the_share():
    spec = vggspec.load("D")
    budget = train_budget(spec, TrainSettings(batch=256, processes=4))
    analysis = vggspec.analyze(spec)
    assert budget.forward_flops == 2 * analysis.macs * 64
    assert budget.backward_flops == 2 * analysis.backward_macs * 64
    assert sum(layer.forward_flops for layer in budget.layers) == budget.forward_flops
    assert sum(layer.backward_flops for layer in budget.layers) == budget.backward_flops


# -- the planner ------------------------------------------------------------------------------------


def test_the_planner_takes_the_fewest_passes_that_fit():
    spec = vggspec.load("D")
    settings = TrainSettings(batch=256)
    memory = 16 * 2**30
    found = plan(spec, memory, settings)
    assert found.fits and found.usable == int(memory * 0.9)
    micro, steps = found.budget.settings.micro, found.budget.settings.accumulation
    assert found.budget.peak_bytes <= found.usable
    assert steps * micro >= 256 > (steps - 1) * micro  # the passes give the batch, none wasted
    fewer = math.ceil(256 / (steps - 1))  # one pass fewer would not fit
    assert train_budget(spec, TrainSettings(batch=256, micro_batch=fewer)).peak_bytes > found.usable
    assert found.largest >= micro
    assert train_budget(spec, TrainSettings(batch=256, micro_batch=found.largest)).peak_bytes <= found.usable
    assert train_budget(spec, TrainSettings(batch=256, micro_batch=found.largest + 1)).peak_bytes > found.usable


def test_a_batch_that_fits_whole_takes_one_pass():
    found = plan(vggspec.load("small/A-narrow-32"), 2**30, TrainSettings(batch=256))
    assert found.fits and found.budget.settings.accumulation == 1 and found.budget.settings.micro == 256


def test_too_little_memory_says_what_would_do():
    spec = vggspec.load("E")
    found = plan(spec, 2 * 2**30, TrainSettings(batch=256))
    assert not found.fits
    one = train_budget(spec, TrainSettings(batch=256, micro_batch=1)).peak_bytes
    assert found.needed * 0.9 >= one and plan(spec, found.needed, TrainSettings(batch=256)).fits


def test_the_planner_is_fast():
    """Milliseconds, not the seconds MemTracker takes: a whole plan of E is a dozen replays."""
    spec = vggspec.load("E")
    started = time.perf_counter()
    plan(spec, 16 * 2**30, TrainSettings(batch=256))
    assert time.perf_counter() - started < 1.0


def test_micro_batch_auto_plans_for_the_process_with_the_least_memory():
    """The trainer's --micro-batch auto on GPUs: every process takes as many passes, so the least free
    memory decides; too little is a SpecError that says what it would take."""
    from vggspec.plan.budget import auto_micro_batch

    spec, settings = vggspec.load("D"), TrainSettings(batch=256, processes=2)
    micro, note = auto_micro_batch(spec, settings, [40 * 2**30, 12 * 2**30], "cuda:0")
    found = plan(spec, 12 * 2**30, settings)
    assert micro == found.budget.settings.micro < 128
    assert f"{found.budget.settings.accumulation} passes of {micro} images a step" in note
    assert "free on the process with the least, of 2" in note
    with pytest.raises(SpecError, match="does not fit even one image a pass"):
        auto_micro_batch(spec, settings, [2**30], "cuda:0")


@pytest.mark.parametrize(
    "text, size",
    [("80GiB", 80 * 2**30), ("16GB", 16 * 10**9), ("512 MiB", 512 * 2**20), ("1.5tib", int(1.5 * 2**40)), ("7b", 7)],
)
def test_memory_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["12 parsecs", "-1", "0GiB", "12", "GiB", "", "1e3GB"])
def test_memory_sizes_that_are_none(text):
    with pytest.raises(SpecError):
        parse_size(text)


def test_a_batch_the_processes_do_not_divide_is_budgeted_for_the_largest_share():
    """256 over 3 processes: 86, 85 and 85 images; the memory and the time of a step are the largest's."""
    from vggspec.plan.report import step_setting

    spec = vggspec.load("D")
    uneven = train_budget(spec, TrainSettings(batch=256, processes=3))
    assert uneven.settings.share == 86
    assert uneven.peak_bytes == train_budget(spec, TrainSettings(batch=258, processes=3)).peak_bytes
    assert "of batch 256 over 3 processes: 85–86 images in one pass" in step_setting(uneven)
    assert "the budget is of a process that takes the most" in step_setting(uneven)


@pytest.mark.parametrize("bad", [dict(batch=0), dict(batch=2, processes=3), dict(micro_batch=0), dict(amp="fp8")])
def test_settings_that_cannot_work(bad):
    with pytest.raises(SpecError):
        TrainSettings(**bad)


# -- the time bound ---------------------------------------------------------------------------------


def test_the_time_bound_is_the_flops_at_the_peak_rates():
    budget = train_budget(vggspec.load("D"), TrainSettings(batch=256, processes=4, amp="bf16"))
    bound = time_bound(budget, 312e12, device="a100")
    assert bound.step_seconds == pytest.approx(budget.flops / 312e12)
    assert bound.steps_per_epoch == IMAGENET_TRAIN_IMAGES // 256
    assert bound.epoch_seconds == pytest.approx(bound.step_seconds * bound.steps_per_epoch)


def test_float32_convolutions_run_at_tf32_and_fc_layers_at_fp32():
    budget = train_budget(vggspec.load("D"), TrainSettings(batch=64))
    conv, fc = rates(gpu("A100"), None)
    assert (conv, fc) == (156e12, 19.5e12)
    bound = time_bound(budget, conv, fc)
    fc_flops = sum(la.forward_flops + la.backward_flops for la in budget.layers if la.kind == "fc")
    assert bound.step_seconds == pytest.approx((budget.flops - fc_flops) / conv + fc_flops / fc)


def test_gpus_by_name():
    assert gpu("H-100") is GPUS["h100"]
    with pytest.raises(SpecError, match="did you mean 'a100'"):
        gpu("a1000")
    with pytest.raises(SpecError, match="no bfloat16"):
        rates(gpu("v100"), "bf16")


@pytest.mark.parametrize("text, rate", [("312e12", 312e12), ("312T", 312e12), ("1.2 PFLOPS", 1.2e15)])
def test_device_flops(text, rate):
    assert parse_flops(text) == pytest.approx(rate)


@pytest.mark.parametrize("text", ["fast", "-5", "0"])
def test_device_flops_that_are_none(text):
    with pytest.raises(SpecError):
        parse_flops(text)


# -- the layer kinds' rules --------------------------------------------------------------------------


def test_every_layer_kinds_parameter_tensors_sum_to_its_parameters():
    from vggspec.spec.bundled import matching

    for name in matching(None):
        spec = vggspec.load(name)
        for layer, stats in zip(spec.layers, vggspec.analyze(spec).layers):
            assert sum(layer.parameter_numels(stats.input_shape)) == stats.params, (name, stats.name)


def test_every_layer_kind_replays_its_training_forward():
    """A kind without a rule would fail loudly (NotImplementedError); every bundled one has one."""
    from vggspec.spec.layers import LAYER_KINDS, LayerSpec

    for kind in LAYER_KINDS.values():
        assert kind.record_training is not LayerSpec.record_training, kind.__name__
