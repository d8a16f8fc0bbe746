"""Training and evaluation samples and batches (vggspec/data.py): datasets, collate, to the device.

Every image here is drawn in the test (PIL shapes and noise) and saved in tmp_path; the crops are
small (input 32, S around 40-64) so the whole file runs in seconds.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image, ImageOps

from vggspec.data import colour, decoding, folders
from vggspec.data import datasets as data
from vggspec.data.preprocessing import Preprocessing
from vggspec.data.scales import TrainingScale
from vggspec.errors import SpecError

from .images import make_split, picture, save_oriented

SIZE = 32  # crop side in most tests


def flat_stats(channels: int = 3) -> colour.ColourStats:
    eye = np.eye(channels).tolist()
    return colour.ColourStats(
        mean=[100.0] * channels, eigenvalues=[1.0] * channels, eigenvectors=eye, images=1, pixels=1
    )


def augment(scale=TrainingScale(40, 40), channels=3, stats=None, **kw) -> data.Augment:
    return data.Augment(input_size=SIZE, scale=scale, channels=channels, stats=stats or flat_stats(channels), **kw)


# -- training samples --------------------------------------------------------------------------


def test_sample_shapes_and_dtypes(folder):
    stats = colour.colour_stats(folder, 3)
    ds = data.TrainDataset(folder, augment(TrainingScale(40, 64), stats=stats), seed=0)
    assert len(ds) == len(folder.samples) == 12
    for i in range(len(ds)):
        s = ds[i]
        assert s.ok and s.index == i and s.label == folder.samples[i][1]
        assert s.image.dtype == torch.uint8 and s.image.shape == (3, SIZE, SIZE)
        assert s.shift.dtype == torch.float32 and s.shift.shape == (3,)
        assert s.shift.abs().sum() > 0


@given(st.lists(st.tuples(st.text(min_size=0, max_size=12), st.integers(0, 10**6)), max_size=20))
@example([("/data/caf\udce9.jpg", 3), ("", 0), ("/données/ünïcode.png", 7)])  # os.listdir's undecodable bytes
def test_packed_samples_give_back_every_path_and_label(samples):
    """Any text, surrogates too (undecodable file names), empty paths, no samples at all."""
    packed = data.PackedSamples(samples)
    assert len(packed) == len(samples) and [packed[i] for i in range(len(packed))] == samples


def test_datasets_read_the_packed_samples_not_the_folders_tuples(folder):
    """So loader workers touch no Python object per sample (tools/bench_memory.py measures why)."""
    import dataclasses

    train = data.TrainDataset(folder, augment(TrainingScale(40, 64)), seed=0)
    val = data.EvalDataset(folder, data.Evaluate(input_size=SIZE, scale=40, channels=3))
    expected = [(train[i].label, val[i].label) for i in range(len(folder.samples))]
    train.folder = val.folder = dataclasses.replace(folder, samples=())  # nothing left to read there
    assert len(train) == len(val) == len(expected)
    assert [(train[i].label, val[i].label) for i in range(len(expected))] == expected
    assert all(train[i].ok and val[i].ok for i in range(len(expected)))


def test_samples_are_a_function_of_seed_epoch_index(folder):
    aug = augment(TrainingScale(40, 64), colour_std=0.1)
    a, b = data.TrainDataset(folder, aug, seed=7), data.TrainDataset(folder, aug, seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    forward = [a[i] for i in range(len(a))]
    backward = [b[i] for i in reversed(range(len(b)))][::-1]
    for x, y in zip(forward, backward):
        assert torch.equal(x.image, y.image) and torch.equal(x.shift, y.shift)
    b.set_epoch(4)
    assert sum(not torch.equal(a[i].image, b[i].image) for i in range(len(a))) >= len(a) - 1
    assert (a.draw(5).left, a.draw(5).top) != (b.draw(5).left, b.draw(5).top)
    c = data.TrainDataset(folder, aug, seed=8)
    c.set_epoch(3)
    assert not torch.equal(a[5].image, c[5].image)
    assert a.draw(5, epoch=4).scale == b.draw(5).scale


def test_samples_do_not_depend_on_dataloader_workers(folder):
    ds = data.TrainDataset(folder, augment(TrainingScale(40, 64)), seed=1)
    ds.set_epoch(2)
    order = [[5, 0, 3], [11, 7], [1, 2, 4, 6]]
    loaded = list(
        torch.utils.data.DataLoader(
            ds, batch_sampler=order, num_workers=2, collate_fn=data.collate, multiprocessing_context="fork"
        )
    )
    for batch, indices in zip(loaded, order):
        assert batch.indices.tolist() == indices
        assert torch.equal(batch.images, data.collate([ds[i] for i in indices]).images)


def test_scale_jitter_range_respected(folder):
    ds = data.TrainDataset(folder, augment(TrainingScale(40, 48)), seed=0)
    scales = [ds.draw(i % 12, epoch=i // 12).scale for i in range(1200)]
    assert min(scales) == 40 and max(scales) == 48
    counts = np.bincount(scales)[40:]
    assert counts.min() > 1200 / 9 * 0.6  # roughly uniform over 40..48
    fixed = data.TrainDataset(folder, augment(TrainingScale(40, 40)), seed=0)
    assert {fixed.draw(i).scale for i in range(12)} == {40}


def test_sample_is_the_reference_crop_at_the_drawn_scale(folder):
    """Each sample is what rescale-to-S + crop + flip makes for its draw (S jittered)."""
    ds = data.TrainDataset(folder, augment(TrainingScale(40, 80)), seed=3)
    for i in range(len(ds)):
        d = ds.draw(i)
        ref = decoding.reference_image(folder.samples[i][0], d.scale, SIZE, d.left, d.top, d.flip, 3)
        assert (ds[i].image.float() - ref.float()).abs().mean() < 2.5


def test_flip_half_the_time(folder, tmp_path):
    ds = data.TrainDataset(folder, augment(), seed=0)
    flips = sum(ds.draw(i % 12, epoch=i // 12).flip for i in range(2000))
    assert 900 < flips < 1100
    no_flip = data.TrainDataset(folder, augment(flip=False), seed=0)
    assert not any(no_flip.draw(i).flip for i in range(200))
    path = folder.samples[3][0]
    plain = decoding.render(path, 40, SIZE, 0.3, 0.6, False, 3)
    flipped = decoding.render(path, 40, SIZE, 0.3, 0.6, True, 3)
    assert torch.equal(flipped, plain.flip(-1)) and not torch.equal(flipped, plain)


def test_colour_shift_follows_stats(folder):
    stats = colour.ColourStats(
        mean=[0, 0, 0],
        eigenvalues=[300.0, 30.0, 3.0],
        eigenvectors=np.eye(3)[:, [2, 0, 1]].tolist(),
        images=1,
        pixels=1,
    )
    ds = data.TrainDataset(folder, augment(stats=stats, colour_std=0.1), seed=0)
    shifts = np.stack([stats.shift(ds.draw(i % 12, epoch=i // 12).alpha) for i in range(3000)])
    # P·(α⊙λ)/255 with α ~ N(0, 0.1): std 0.1·λ/255 along each eigenvector (channel 2, 0, 1 here)
    assert shifts.std(axis=0) == pytest.approx([0.1 * 30 / 255, 0.1 * 3 / 255, 0.1 * 300 / 255], rel=0.1)
    off = data.TrainDataset(folder, augment(stats=stats, colour_std=0.0), seed=0)
    assert torch.equal(off[0].shift, torch.zeros(3))


# -- broken files, batches, the device ---------------------------------------------------------


@pytest.fixture
def broken_folder(tmp_path) -> folders.ImageFolder:
    make_split(tmp_path, "train", {"a": [(100, 80), (80, 100)]})
    folder = tmp_path / "train" / "a"
    rng = np.random.default_rng(0)
    (folder / "x_random.jpg").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (folder / "x_empty.jpg").write_bytes(b"")
    buffer = io.BytesIO()
    picture(300, 200, 5).save(buffer, "JPEG", quality=90)
    (folder / "x_truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "x_text.png").write_text("not a png")
    return folders.scan(tmp_path, "train")


def test_broken_files_give_not_ok_samples(broken_folder):
    ds = data.TrainDataset(broken_folder, augment(), seed=0)
    samples = [ds[i] for i in range(len(ds))]
    names = [Path(p).name for p, _ in broken_folder.samples]
    assert [s.ok for s in samples] == [not n.startswith("x_") for n in names]
    for s in samples:
        assert s.image.shape == (3, SIZE, SIZE) and s.image.dtype == torch.uint8
        if not s.ok:
            assert s.image.sum() == 0 and s.shift.sum() == 0
    batch = data.collate(samples)
    assert batch.images.shape == (2, 3, SIZE, SIZE)
    assert batch.broken == [i for i, n in enumerate(names) if n.startswith("x_")]
    assert batch.indices.tolist() == [i for i, n in enumerate(names) if not n.startswith("x_")]
    assert batch.labels.dtype == torch.int64 and batch.shifts.shape == (2, 3)
    empty = data.collate([s for s in samples if not s.ok])
    assert empty.images.shape == (0, 3, SIZE, SIZE) and len(empty.broken) == 4
    inputs, labels = data.to_device(empty, paper(flat_stats()), "cpu")
    assert inputs.shape == (0, 3, SIZE, SIZE) and labels.shape == (0,)
    evaluated = data.EvalDataset(broken_folder, data.Evaluate(SIZE, 40, 3))
    assert [evaluated[i].ok for i in range(len(evaluated))] == [s.ok for s in samples]
    assert colour.colour_stats(broken_folder, 3).images == 2


def paper(stats: colour.ColourStats) -> Preprocessing:
    return Preprocessing.paper(stats.mean)


def test_to_device_subtracts_mean_and_adds_shift():
    images = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    shifts = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    batch = data.Batch(images, shifts, torch.tensor([3, 1]), torch.tensor([0, 1]), [])
    stats = colour.ColourStats(
        mean=[10.0, 20.0, 30.0], eigenvalues=[1, 1, 1], eigenvectors=np.eye(3).tolist(), images=1, pixels=1
    )
    inputs, labels = data.to_device(batch, paper(stats), "cpu")
    expected = images.float() - torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1) + shifts.view(2, 3, 1, 1)
    assert inputs.dtype == torch.float32 and torch.allclose(inputs, expected)
    assert inputs.is_contiguous() and labels.tolist() == [3, 1] and labels.dtype == torch.int64
    last, _ = data.to_device(batch, paper(stats), "cpu", channels_last=True, dtype=torch.bfloat16)
    assert last.dtype == torch.bfloat16 and last.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(last.float(), expected, atol=1.0)


def test_normalise_without_shifts_is_image_minus_mean_in_the_images_layout():
    """Evaluation's inputs: ``image - mean`` to the bit, in the memory layout the images come in."""
    images = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    stats = colour.ColourStats(
        mean=[10.3, 20.7, 123.456], eigenvalues=[1, 1, 1], eigenvectors=np.eye(3).tolist(), images=1, pixels=1
    )
    inputs = data.normalise(images, paper(stats), "cpu")
    assert inputs.dtype == torch.float32 and inputs.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(inputs, images.float() - torch.tensor(stats.mean).view(1, 3, 1, 1))


def test_normalise_for_torchvision_weights_scales_and_divides_and_shifts_on_that_scale():
    """``(image / 255 - mean) / std``; a colour shift (0-255 scale) moves the pixels before they are scaled."""
    images = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    shifts = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    record = Preprocessing(scale=1, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    mean, std = torch.tensor(record.mean).view(1, 3, 1, 1), torch.tensor(record.std).view(1, 3, 1, 1)
    torch.testing.assert_close(data.normalise(images, record, "cpu"), (images.float() / 255 - mean) / std)
    shifted = data.normalise(images, record, "cpu", shifts=shifts)
    torch.testing.assert_close(shifted, ((images.float() + shifts.view(2, 3, 1, 1)) / 255 - mean) / std)


def test_collate_then_to_device_round_trip(folder):
    stats = colour.colour_stats(folder, 3)
    ds = data.TrainDataset(folder, augment(stats=stats), seed=0)
    samples = [ds[i] for i in (4, 2, 9)]
    # Interleaved memory from the decoder to the batch: no planar copy on the way (a slow uint8 gather).
    assert all(s.image.permute(1, 2, 0).is_contiguous() for s in samples)
    batch = data.collate(samples)
    assert batch.images.shape == (3, 3, SIZE, SIZE) and batch.broken == []
    assert batch.images.is_contiguous(memory_format=torch.channels_last)
    inputs, labels = data.to_device(batch, paper(stats), "cpu")
    assert inputs.is_contiguous()  # the layout the model asks for, whatever the batch's
    first = samples[0].image.float() - torch.tensor(stats.mean).view(3, 1, 1) + samples[0].shift.view(3, 1, 1)
    assert torch.allclose(inputs[0], first, atol=1e-4)
    last, _ = data.to_device(batch, paper(stats), "cpu", channels_last=True)
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.equal(last, inputs)
    assert labels.tolist() == [folder.samples[i][1] for i in (4, 2, 9)]


# -- gray specs, evaluation, validation of the settings ---------------------------------------


def test_gray_spec(folder):
    stats = colour.colour_stats(folder, 1)
    assert len(stats.mean) == 1 and stats.eigenvectors == [[1.0]]
    ds = data.TrainDataset(folder, augment(TrainingScale(40, 64), channels=1, stats=stats), seed=0)
    for i in range(len(ds)):
        s = ds[i]
        assert s.ok and s.image.shape == (1, SIZE, SIZE) and s.shift.shape == (1,)
        d = ds.draw(i)
        ref = decoding.reference_image(folder.samples[i][0], d.scale, SIZE, d.left, d.top, d.flip, 1)
        assert (s.image.float() - ref.float()).abs().mean() < 2.5
    inputs, _ = data.to_device(data.collate([ds[0], ds[1]]), paper(stats), "cpu")
    assert inputs.shape == (2, 1, SIZE, SIZE)


def test_gray_jpeg_for_rgb_spec(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    picture(200, 150, 0).convert("L").save(tmp_path / "train" / "a" / "g.jpg")
    folder = folders.scan(tmp_path, "train")
    s = data.TrainDataset(folder, augment(), seed=0)[0]
    assert s.ok and s.image.shape == (3, SIZE, SIZE)
    assert torch.equal(s.image[0], s.image[1]) and torch.equal(s.image[1], s.image[2])


@pytest.mark.parametrize("torchcodec", [True, False])
def test_phone_photos_among_plain_images_give_upright_crops_that_batch(tmp_path, monkeypatch, torchcodec):
    """Portrait photos stored landscape with EXIF orientation 6 (a small one read whole, a large one read by
    its head and reduced in the DCT) among plain JPEGs and a PNG: every training and validation sample is the
    crop of the upright image (``exif_transpose``), and the batch collates (it raised "stack expects each
    tensor to be equal size": TorchCodec turned the pixels, the crop's geometry came from the header)."""
    if not torchcodec:
        monkeypatch.setattr(decoding, "jpeg_decoder", lambda: None)
    monkeypatch.setattr(decoding, "WHOLE_FILE_BYTES", 30_000)
    folder = tmp_path / "train" / "a"
    folder.mkdir(parents=True)
    small = save_oriented(folder / "phone_small.jpg", picture(60, 100, 1), 6)
    large = save_oriented(folder / "phone_large.jpg", picture(480, 800, 2), 6)
    assert small.stat().st_size <= decoding.WHOLE_FILE_BYTES < large.stat().st_size
    picture(100, 60, 3).save(folder / "plain.jpg", quality=92)
    picture(70, 70, 4).save(folder / "plain.png")
    train = folders.scan(tmp_path, "train")
    upright = {}  # each image as PIL shows it upright, lossless: what the crops must be made of
    for path, _ in train.samples:
        with Image.open(path) as img:
            upright[path] = str(tmp_path / f"{Path(path).name}.png")
            ImageOps.exif_transpose(img).save(upright[path])
    # S ≤ 48: torch resamples these (no region path)
    ds = data.TrainDataset(train, augment(TrainingScale(40, 48)), seed=0)
    for epoch in range(4):
        ds.set_epoch(epoch)
        samples = [ds[i] for i in range(len(ds))]
        for i, sample in enumerate(samples):
            d = ds.draw(i)
            ref = decoding.reference_image(upright[train.samples[i][0]], d.scale, SIZE, d.left, d.top, d.flip, 3)
            assert sample.ok and sample.image.shape == ref.shape, (train.samples[i], d)
            assert (sample.image.float() - ref.float()).abs().mean() < 2.5, (train.samples[i], d)
        batch = data.collate(samples)
        assert batch.images.shape == (4, 3, SIZE, SIZE) and batch.broken == []
    evaluated = data.EvalDataset(train, data.Evaluate(input_size=SIZE, scale=48, channels=3))
    batch = data.collate([evaluated[i] for i in range(len(evaluated))])
    assert batch.images.shape == (4, 3, SIZE, SIZE) and batch.broken == []
    for i, image in enumerate(batch.images):
        ref = decoding.reference_image(upright[train.samples[i][0]], 48, SIZE, None, None, False, 3)
        assert (image.float() - ref.float()).abs().mean() < 2.5, train.samples[i]


def test_eval_dataset_is_deterministic_centre_crop(dataset_dir, folder):
    val = folders.scan(dataset_dir, "val", classes=folder.classes)
    evaluate = data.Evaluate(input_size=SIZE, scale=48, channels=3)
    a, b = data.EvalDataset(val, evaluate), data.EvalDataset(val, evaluate)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x.ok and torch.equal(x.image, y.image) and torch.equal(x.shift, torch.zeros(3))
        assert x.label == val.samples[i][1]
        ref = decoding.reference_image(val.samples[i][0], 48, SIZE, None, None, False, 3)
        assert (x.image.float() - ref.float()).abs().mean() < 2.5


def test_settings_are_checked():
    with pytest.raises(SpecError, match="does not fit 32×32 crops"):
        augment(TrainingScale(24, 64))
    with pytest.raises(SpecError, match="does not fit"):
        augment(TrainingScale(64, 40))
    with pytest.raises(SpecError, match="1 \\(gray\\) or 3 \\(RGB\\)"):
        augment(channels=4, stats=flat_stats(4))
    with pytest.raises(SpecError, match="colour statistics have 3 channels"):
        augment(channels=1, stats=flat_stats(3))
    with pytest.raises(SpecError, match="the test scale 20 is smaller than the network's 32-pixel input"):
        data.Evaluate(input_size=SIZE, scale=20, channels=3)
    assert TrainingScale.default(224) == (256, 256) and TrainingScale.default(32) == (37, 37)


def test_the_training_scale_has_one_form_in_checkpoints():
    """Stored as [S_min, S_max] and read back by the same rules as the checkpoint's field check; a checkpoint
    from before the entry existed gives its configuration's scale, or the default for its input."""
    scale = TrainingScale.parse("18:24")
    assert scale.to_checkpoint() == [18, 24] and TrainingScale.from_entry(scale.to_checkpoint()) == scale
    for bad in ([18], [0, 24], [24, 18], ["18", "24"], [True, 2], "18:24"):
        with pytest.raises(ValueError, match="two sizes S_min ≤ S_max"):
            TrainingScale.from_entry(bad)
    assert TrainingScale.from_checkpoint({"train_scale": [18, 24], "config": {"scale": "30"}}, 16) == (18, 24)
    assert TrainingScale.from_checkpoint({"config": {"scale": "18:24", "other": 1}}, 16) == (18, 24)
    assert TrainingScale.from_checkpoint({}, 32) == (37, 37)
    with pytest.raises(SpecError, match="the checkpoint's training scale cannot be read: a scale is a number"):
        TrainingScale.from_checkpoint({"config": {"scale": "big"}}, 16)


def test_a_training_scale_above_the_largest_test_scale_is_refused():
    """The validation during training tests at S: an S no test scale may be is refused before anything runs."""
    with pytest.raises(SpecError, match="the training scale 256:9000 is above 8192"):
        TrainingScale.resolve("256:9000", 224)
    assert TrainingScale.resolve("256:8192", 224) == (256, 8192)
