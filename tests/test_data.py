"""The training input pipeline (vggspec/data.py): folders, colour statistics, crops, batches.

Every image here is drawn in the test (PIL shapes and noise) and saved in tmp_path; the crops are
small (input 32, S around 40-64) so the whole file runs in seconds.
"""

from __future__ import annotations

import io
import math
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from torchvision.transforms import functional as TF

from vggspec import data
from vggspec.errors import SpecError
from vggspec.scales import TrainingScale

SIZE = 32  # crop side in most tests


def picture(width: int, height: int, seed: int, noise: float = 6.0) -> Image.Image:
    """Coloured shapes on a smooth background, with a little noise: something like a photo."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(width // 10, width // 2)), y0 + int(rng.integers(height // 10, height // 2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, noise, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_split(root: Path, split: str, classes: dict[str, list[tuple[int, int]]], fmt: str = "jpg") -> Path:
    for c, (name, sizes) in enumerate(classes.items()):
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, (w, h) in enumerate(sizes):
            picture(w, h, seed=100 * c + i).save(folder / f"img{i:02d}.{fmt}", quality=92)
    return root


def flat_stats(channels: int = 3) -> data.ColourStats:
    eye = np.eye(channels).tolist()
    return data.ColourStats(mean=[100.0] * channels, eigenvalues=[1.0] * channels, eigenvectors=eye, images=1, pixels=1)


def augment(scale=(40, 40), channels=3, stats=None, **kw) -> data.Augment:
    return data.Augment(input_size=SIZE, scale=scale, channels=channels, stats=stats or flat_stats(channels), **kw)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    """train/{cat,dog}: JPEGs of several shapes, one large enough for a 1/8 draft at S=40."""
    root = tmp_path_factory.mktemp("images")
    sizes = [(120, 90), (90, 120), (64, 48), (400, 300), (333, 250), (160, 160)]
    make_split(root, "train", {"cat": sizes, "dog": sizes[::-1]})
    make_split(root, "val", {"cat": sizes[:2], "dog": sizes[:2]})
    return root


@pytest.fixture(scope="module")
def folder(dataset_dir) -> data.ImageFolder:
    return data.scan(dataset_dir, "train")


# -- scan --------------------------------------------------------------------------------------


def test_scan_lists_sorted_samples_with_labels(tmp_path):
    for rel in ["b/z.JPG", "b/a.png", "b/sub/m.jpeg", "a/x.jpg", "a/.hidden.jpg", "a/notes.txt"]:
        path = tmp_path / "train" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (tmp_path / "train" / ".cache").mkdir()
    folder = data.scan(tmp_path, "train")
    assert folder.classes == ("a", "b")
    assert folder.root == tmp_path / "train"
    rels = [(str(Path(p).relative_to(folder.root)), label) for p, label in folder.samples]
    assert rels == [("a/x.jpg", 0), ("b/a.png", 1), ("b/sub/m.jpeg", 1), ("b/z.JPG", 1)]
    assert data.scan(tmp_path, "train") == folder  # deterministic


def test_scan_missing_directory_and_split(tmp_path):
    with pytest.raises(SpecError, match="does not exist") as err:
        data.scan(tmp_path / "nowhere", "train")
    assert err.value.hint and "DIR/<split>/<class>" in err.value.hint
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    with pytest.raises(SpecError, match="no 'val' split") as err:
        data.scan(tmp_path, "val")
    assert "'test', 'train'" in str(err.value)


def test_scan_no_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    picture(20, 20, 0).save(tmp_path / "train" / "loose.jpg")
    with pytest.raises(SpecError, match="1 image but no class folders") as err:
        data.scan(tmp_path, "train")
    assert "folder of its own" in err.value.hint


def test_scan_empty_class_folder(tmp_path):
    make_split(tmp_path, "train", {"cat": [(20, 20)]})
    (tmp_path / "train" / "dog").mkdir()
    (tmp_path / "train" / "dog" / "readme.txt").write_text("x")
    with pytest.raises(SpecError, match="dog holds no images") as err:
        data.scan(tmp_path, "train")
    assert "readme.txt" in str(err.value) and ".jpg" in err.value.hint


def test_scan_val_classes_must_be_training_classes_and_keep_their_labels(tmp_path):
    make_split(tmp_path, "train", {"cat": [(20, 20)], "dog": [(20, 20)]})
    make_split(tmp_path, "val", {"cat": [(20, 20)], "cow": [(20, 20)]})
    train = data.scan(tmp_path, "train")
    with pytest.raises(SpecError, match="has class folders the training split has not: 'cow'"):
        data.scan(tmp_path, "val", classes=train.classes)
    assert data.scan(tmp_path, "train", classes=["cat", "dog"]).classes == ("cat", "dog")
    # A test set without some classes: its labels are still the training classes' indices.
    make_split(tmp_path, "test", {"dog": [(20, 20), (30, 20)]})
    test = data.scan(tmp_path, "test", classes=train.classes)
    assert test.classes == ("cat", "dog") and [label for _, label in test.samples] == [1, 1]


# -- geometry and the fast path against the straightforward pipeline ---------------------------


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (333, 500), (64, 64), (1000, 17)])
def test_rescaled_size_is_torchvisions(size):
    image = Image.new("RGB", size)
    for scale in (17, 40, 256, 301):
        assert TF.resize(image, scale).size == data.rescaled_size(*size, scale)


def test_crop_box_stays_inside_and_centres():
    for left in (0.0, 0.5, 0.999999):
        x0, y0, x1, y1 = data.crop_box(500, 375, 256, 224, left, 0.999999)
        assert 0 <= x0 and x1 <= 341 and 0 <= y0 and y1 <= 256 and x1 - x0 == 224 == y1 - y0
    assert data.crop_box(500, 375, 256, 224) == (58, 16, 282, 240)  # CenterCrop's box


@pytest.mark.parametrize("region_area", [0.0, data.REGION_RESAMPLING_AREA, math.inf])
def test_png_fast_path_is_the_reference_pipeline(tmp_path, monkeypatch, region_area):
    """Without DCT draft, both ways of resampling (torch's whole image, PIL's crop region) give
    the whole-image rescale's pixels up to rounding."""
    monkeypatch.setattr(data, "REGION_RESAMPLING_AREA", region_area)
    path = str(tmp_path / "a.png")
    picture(300, 200, 1).save(path)
    rng = np.random.default_rng(0)
    for _ in range(8):
        scale, left, top, flip = int(rng.integers(32, 120)), rng.random(), rng.random(), bool(rng.random() < 0.5)
        fast = data.render(path, scale, SIZE, left, top, flip, 3)
        ref = data.reference_image(path, scale, SIZE, left, top, flip, 3)
        assert (fast.int() - ref.int()).abs().max() <= 1


def test_jpeg_fast_path_close_to_reference(tmp_path):
    """With the 1/2-1/8 DCT draft, only interpolation error separates the two."""
    path = str(tmp_path / "big.jpg")
    picture(1200, 900, 2).save(path, quality=92)
    rng = np.random.default_rng(1)
    factors = set()
    for scale in (40, 100, 150, 250, 500, 1000):
        factors.add(data._draft_factor(1200, 900, scale))
        for _ in range(3):
            left, top, flip = rng.random(), rng.random(), bool(rng.random() < 0.5)
            fast = data.render(path, scale, SIZE, left, top, flip, 3).float()
            ref = data.reference_image(path, scale, SIZE, left, top, flip, 3).float()
            assert (fast - ref).abs().mean() < 1.5, scale
    assert factors == {8, 4, 2, 1}


def test_drafted_size_not_divisible_by_the_factor(tmp_path):
    """333 px at 1/4 is 84 decoded pixels for 83.25 of image: resampling must use the 83.25."""
    path = str(tmp_path / "odd.jpg")
    picture(333, 250, 3, noise=12.0).save(path, quality=95)
    pixels, span, size = data.decode(path, 40, 3)
    assert pixels.shape == (3, 63, 84) and span == (333 / 4, 250 / 4) and size == (333, 250)
    # S = 40: torch resamples the whole drafted image; S = 80 (1/2): PIL resamples the crop's region
    for scale, left, top in [(40, 0.0, 0.0), (40, 0.99, 0.99), (40, 0.5, 0.2), (80, 0.99, 0.99), (80, 0.3, 0.7)]:
        fast = data.render(path, scale, SIZE, left, top, False, 3).float()
        ref = data.reference_image(path, scale, SIZE, left, top, False, 3).float()
        assert (fast - ref).abs().mean() < 1.2  # stretching 84 pixels over the image gives ~3


def test_jpeg_decoders_agree(tmp_path, monkeypatch):
    """torchvision's decoder (training) and PIL's (threads, fallback) give the same pixels."""
    colour, gray = str(tmp_path / "c.jpg"), str(tmp_path / "g.jpg")
    picture(120, 90, 4).save(colour, quality=90)
    picture(120, 90, 5).convert("L").save(gray, quality=90)
    for path in (colour, gray):
        for channels in (3, 1):
            fast, *_ = data.decode(path, 60, channels)
            pil, *_ = data.decode(path, 60, channels, threads=True)
            assert fast.shape == pil.shape == (channels, 90, 120) and torch.equal(fast, pil)
            rendered = data.render(path, 70, SIZE, 0.4, 0.6, True, channels)
            with monkeypatch.context() as patch:
                patch.setattr(data, "_torchvision_jpeg", lambda: None)  # a torchvision without image decoding
                assert torch.equal(data.render(path, 70, SIZE, 0.4, 0.6, True, channels), rendered)


def test_jpeg_header_gives_pils_size_or_leaves_the_file_to_pil(tmp_path, monkeypatch):
    """The frame header parser sizes the JPEGs torchvision decodes (and only those) as PIL does."""
    image = picture(123, 77, 6)
    exif = Image.Exif()
    exif[0x0112] = 6  # an orientation tag: neither decoder applies it, so it must not change the size
    variants = {
        "baseline": {"quality": 90},
        "progressive": {"quality": 80, "progressive": True},
        "444 with exif and icc": {"subsampling": 0, "exif": exif.tobytes(), "icc_profile": b"\0" * 600},
        "restart markers": {"restart_marker_blocks": 4},
    }
    for name, options in variants.items():
        for mode in ("RGB", "L"):
            path = tmp_path / f"{name}-{mode}.jpg"
            image.convert(mode).save(path, **options)
            with Image.open(path) as img:
                assert data._plain_jpeg_size(path.read_bytes()) == img.size == (123, 77), (name, mode)
    image.convert("CMYK").save(tmp_path / "cmyk.jpg")
    image.save(tmp_path / "png.png")
    jpeg = (tmp_path / "baseline-RGB.jpg").read_bytes()
    for raw in ((tmp_path / "cmyk.jpg").read_bytes(), (tmp_path / "png.png").read_bytes(), jpeg[:40], b"", b"\xff\xd8"):
        assert data._plain_jpeg_size(raw) is None
    # A plain JPEG that needs no DCT reduction never reaches PIL: the header is all it takes.
    path = str(tmp_path / "baseline-RGB.jpg")
    with monkeypatch.context() as patch:
        patch.setattr(data.Image, "open", None)
        assert data.render(path, 40, SIZE, 0.5, 0.5, False, 3).shape == (3, SIZE, SIZE)


@pytest.mark.parametrize("name", ["small.jpg", "large.jpg", "small.png"])
def test_files_read_whole_or_by_their_head_give_the_same_crops(tmp_path, monkeypatch, name):
    """Above WHOLE_FILE_BYTES only the head is read for the header; every path still gets its bytes."""
    path = str(tmp_path / name)
    # At S = 40 the small JPEG goes to torchvision's decoder, the large one is drafted by 8; S = 160
    # resamples the crop's region with PIL.
    picture(*((60, 45) if name.startswith("small") else (520, 400)), 7).save(path, quality=90)
    expected = [data.render(path, scale, SIZE, 0.3, 0.7, True, 3) for scale in (40, 160)]
    monkeypatch.setattr(data, "WHOLE_FILE_BYTES", 300)
    with closing(data._File(path)) as file:
        assert file._raw is None  # only the head was read
    for scale, crop in zip((40, 160), expected):
        assert torch.equal(data.render(path, scale, SIZE, 0.3, 0.7, True, 3), crop)


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(24, 260),
    height=st.integers(24, 260),
    stretch=st.floats(1.0, 4.0),
    left=st.floats(0.0, 0.999),
    top=st.floats(0.0, 0.999),
    flip=st.booleans(),
    fmt=st.sampled_from(["png", "jpg"]),
)
@example(width=46, height=46, stretch=3.40625, left=0.5, top=0.5, flip=False, fmt="jpg")  # off by 2 in PIL
def test_any_size_scale_and_position_gives_the_reference_crop(
    tmp_path_factory, width, height, stretch, left, top, flip, fmt
):
    """Whichever decoder, draft factor and resampler a case takes, the crop is the reference's:
    ≤ 1 per pixel without DCT reduction (2 where PIL resamples the region: its fixed-point
    weights for a box round apart from the whole image's, e.g. 46×46 at S = 109, seen in about
    1 case in 300 and in PIL alone). With it, the DCT's low-pass differs from bilinear
    filtering: a mean of 1-3 on these small, sharp pictures (4.2 at worst seen, 64×64 at S=32);
    a crop from the wrong place or unflipped differs by tens. Alignment to a fraction of a
    pixel is test_drafted_size_not_divisible_by_the_factor's."""
    scale = max(SIZE, round(SIZE * stretch))
    path = str(tmp_path_factory.mktemp("any") / f"x.{fmt}")
    picture(width, height, width * 1000 + height).save(path, quality=95)
    fast = data.render(path, scale, SIZE, left, top, flip, 3)
    ref = data.reference_image(path, scale, SIZE, left, top, flip, 3)
    assert fast.shape == ref.shape == (3, SIZE, SIZE) and fast.dtype == torch.uint8
    if fmt == "png" or data._draft_factor(width, height, scale) == 1:
        w, h = data.rescaled_size(width, height, scale)
        region = w * h > data.REGION_RESAMPLING_AREA * SIZE * SIZE
        assert (fast.int() - ref.int()).abs().max() <= (2 if region else 1)
    else:
        assert (fast.float() - ref.float()).abs().mean() < 6.0


def test_draft_keeps_smallest_side_at_least_s():
    assert data._draft_factor(4000, 3000, 256) == 8  # 375 ≥ 256
    assert data._draft_factor(4000, 3000, 400) == 4  # 750
    assert data._draft_factor(2000, 1500, 256) == 4  # 375
    assert data._draft_factor(500, 375, 256) == 1
    assert data._draft_factor(500, 375, 187) == 2  # 187.5


# -- training samples --------------------------------------------------------------------------


def test_sample_shapes_and_dtypes(folder):
    stats = data.colour_stats(folder, 3)
    ds = data.TrainDataset(folder, augment((40, 64), stats=stats), seed=0)
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

    train = data.TrainDataset(folder, augment((40, 64)), seed=0)
    val = data.EvalDataset(folder, data.Evaluate(input_size=SIZE, scale=40, channels=3))
    expected = [(train[i].label, val[i].label) for i in range(len(folder.samples))]
    train.folder = val.folder = dataclasses.replace(folder, samples=())  # nothing left to read there
    assert len(train) == len(val) == len(expected)
    assert [(train[i].label, val[i].label) for i in range(len(expected))] == expected
    assert all(train[i].ok and val[i].ok for i in range(len(expected)))


def test_samples_are_a_function_of_seed_epoch_index(folder):
    aug = augment((40, 64), colour_std=0.1)
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
    ds = data.TrainDataset(folder, augment((40, 64)), seed=1)
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
    ds = data.TrainDataset(folder, augment((40, 48)), seed=0)
    scales = [ds.draw(i % 12, epoch=i // 12).scale for i in range(1200)]
    assert min(scales) == 40 and max(scales) == 48
    counts = np.bincount(scales)[40:]
    assert counts.min() > 1200 / 9 * 0.6  # roughly uniform over 40..48
    fixed = data.TrainDataset(folder, augment((40, 40)), seed=0)
    assert {fixed.draw(i).scale for i in range(12)} == {40}


def test_sample_is_the_reference_crop_at_the_drawn_scale(folder):
    """Each sample is what rescale-to-S + crop + flip makes for its draw (S jittered)."""
    ds = data.TrainDataset(folder, augment((40, 80)), seed=3)
    for i in range(len(ds)):
        d = ds.draw(i)
        ref = data.reference_image(folder.samples[i][0], d.scale, SIZE, d.left, d.top, d.flip, 3)
        assert (ds[i].image.float() - ref.float()).abs().mean() < 2.5


def test_flip_half_the_time(folder, tmp_path):
    ds = data.TrainDataset(folder, augment(), seed=0)
    flips = sum(ds.draw(i % 12, epoch=i // 12).flip for i in range(2000))
    assert 900 < flips < 1100
    no_flip = data.TrainDataset(folder, augment(flip=False), seed=0)
    assert not any(no_flip.draw(i).flip for i in range(200))
    path = folder.samples[3][0]
    plain = data.render(path, 40, SIZE, 0.3, 0.6, False, 3)
    flipped = data.render(path, 40, SIZE, 0.3, 0.6, True, 3)
    assert torch.equal(flipped, plain.flip(-1)) and not torch.equal(flipped, plain)


def test_colour_shift_follows_stats(folder):
    stats = data.ColourStats(
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


# -- colour statistics -------------------------------------------------------------------------


def test_colour_stats_of_two_flat_colours(tmp_path):
    a, b = np.array([200, 60, 40]), np.array([40, 60, 200])
    for name, colour in (("red", a), ("blue", b)):
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (90, 60), tuple(int(c) for c in colour)).save(tmp_path / "train" / name / f"{i}.png")
    folder = data.scan(tmp_path, "train")
    stats = data.colour_stats(folder, 3)
    assert stats.images == 6 and stats.pixels == 6 * 64 * 43
    assert stats.mean == pytest.approx((a + b) / 2)
    d = (a - b) / np.linalg.norm(a - b)
    top = np.array(stats.eigenvectors)[:, 0]
    assert abs(top @ d) == pytest.approx(1.0)
    assert stats.eigenvalues[0] == pytest.approx(np.linalg.norm(a - b) ** 2 / 4)
    assert stats.eigenvalues[1] == pytest.approx(0, abs=1e-6) and stats.eigenvalues[2] == pytest.approx(0, abs=1e-6)
    vectors = np.array(stats.eigenvectors)
    assert vectors.T @ vectors == pytest.approx(np.eye(3), abs=1e-9)
    assert data.ColourStats.model_validate_json(stats.model_dump_json()) == stats
    gray = data.colour_stats(folder, 1)
    la, lb = (np.array([299, 587, 114]) @ c / 1000 for c in (a, b))
    assert gray.mean[0] == pytest.approx((la + lb) / 2, abs=1)
    assert gray.eigenvalues[0] == pytest.approx(((la - lb) / 2) ** 2, rel=0.05)
    assert gray.eigenvectors == [[1.0]]


def test_colour_stats_sample_is_deterministic(folder):
    one = data.colour_stats(folder, 3, max_images=5, seed=1)
    assert one.images == 5
    assert data.colour_stats(folder, 3, max_images=5, seed=1) == one
    assert data.colour_stats(folder, 3, max_images=5, seed=2) != one
    assert data.colour_stats(folder, 3, max_images=5, seed=1, workers=2) == one


# -- broken files, batches, the device ---------------------------------------------------------


@pytest.fixture
def broken_folder(tmp_path) -> data.ImageFolder:
    make_split(tmp_path, "train", {"a": [(100, 80), (80, 100)]})
    folder = tmp_path / "train" / "a"
    rng = np.random.default_rng(0)
    (folder / "x_random.jpg").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (folder / "x_empty.jpg").write_bytes(b"")
    buffer = io.BytesIO()
    picture(300, 200, 5).save(buffer, "JPEG", quality=90)
    (folder / "x_truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "x_text.png").write_text("not a png")
    return data.scan(tmp_path, "train")


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
    inputs, labels = data.to_device(empty, flat_stats(), "cpu")
    assert inputs.shape == (0, 3, SIZE, SIZE) and labels.shape == (0,)
    evaluated = data.EvalDataset(broken_folder, data.Evaluate(SIZE, 40, 3))
    assert [evaluated[i].ok for i in range(len(evaluated))] == [s.ok for s in samples]
    assert data.colour_stats(broken_folder, 3).images == 2


def test_to_device_subtracts_mean_and_adds_shift():
    images = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    shifts = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    batch = data.Batch(images, shifts, torch.tensor([3, 1]), torch.tensor([0, 1]), [])
    stats = data.ColourStats(
        mean=[10.0, 20.0, 30.0], eigenvalues=[1, 1, 1], eigenvectors=np.eye(3).tolist(), images=1, pixels=1
    )
    inputs, labels = data.to_device(batch, stats, "cpu")
    expected = images.float() - torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1) + shifts.view(2, 3, 1, 1)
    assert inputs.dtype == torch.float32 and torch.allclose(inputs, expected)
    assert inputs.is_contiguous() and labels.tolist() == [3, 1] and labels.dtype == torch.int64
    last, _ = data.to_device(batch, stats, "cpu", channels_last=True, dtype=torch.bfloat16)
    assert last.dtype == torch.bfloat16 and last.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(last.float(), expected, atol=1.0)


def test_collate_then_to_device_round_trip(folder):
    stats = data.colour_stats(folder, 3)
    ds = data.TrainDataset(folder, augment(stats=stats), seed=0)
    samples = [ds[i] for i in (4, 2, 9)]
    # Interleaved memory from the decoder to the batch: no planar copy on the way (a slow uint8 gather).
    assert all(s.image.permute(1, 2, 0).is_contiguous() for s in samples)
    batch = data.collate(samples)
    assert batch.images.shape == (3, 3, SIZE, SIZE) and batch.broken == []
    assert batch.images.is_contiguous(memory_format=torch.channels_last)
    inputs, labels = data.to_device(batch, stats, "cpu")
    assert inputs.is_contiguous()  # the layout the model asks for, whatever the batch's
    first = samples[0].image.float() - torch.tensor(stats.mean).view(3, 1, 1) + samples[0].shift.view(3, 1, 1)
    assert torch.allclose(inputs[0], first, atol=1e-4)
    last, _ = data.to_device(batch, stats, "cpu", channels_last=True)
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.equal(last, inputs)
    assert labels.tolist() == [folder.samples[i][1] for i in (4, 2, 9)]


# -- gray specs, evaluation, validation of the settings ---------------------------------------


def test_gray_spec(folder):
    stats = data.colour_stats(folder, 1)
    assert len(stats.mean) == 1 and stats.eigenvectors == [[1.0]]
    ds = data.TrainDataset(folder, augment((40, 64), channels=1, stats=stats), seed=0)
    for i in range(len(ds)):
        s = ds[i]
        assert s.ok and s.image.shape == (1, SIZE, SIZE) and s.shift.shape == (1,)
        d = ds.draw(i)
        ref = data.reference_image(folder.samples[i][0], d.scale, SIZE, d.left, d.top, d.flip, 1)
        assert (s.image.float() - ref.float()).abs().mean() < 2.5
    inputs, _ = data.to_device(data.collate([ds[0], ds[1]]), stats, "cpu")
    assert inputs.shape == (2, 1, SIZE, SIZE)


def test_gray_jpeg_for_rgb_spec(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    picture(200, 150, 0).convert("L").save(tmp_path / "train" / "a" / "g.jpg")
    folder = data.scan(tmp_path, "train")
    s = data.TrainDataset(folder, augment(), seed=0)[0]
    assert s.ok and s.image.shape == (3, SIZE, SIZE)
    assert torch.equal(s.image[0], s.image[1]) and torch.equal(s.image[1], s.image[2])


def test_eval_dataset_is_deterministic_centre_crop(dataset_dir, folder):
    val = data.scan(dataset_dir, "val", classes=folder.classes)
    evaluate = data.Evaluate(input_size=SIZE, scale=48, channels=3)
    a, b = data.EvalDataset(val, evaluate), data.EvalDataset(val, evaluate)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x.ok and torch.equal(x.image, y.image) and torch.equal(x.shift, torch.zeros(3))
        assert x.label == val.samples[i][1]
        ref = data.reference_image(val.samples[i][0], 48, SIZE, None, None, False, 3)
        assert (x.image.float() - ref.float()).abs().mean() < 2.5


def test_settings_are_checked():
    with pytest.raises(SpecError, match="does not fit 32×32 crops"):
        augment((24, 64))
    with pytest.raises(SpecError, match="does not fit"):
        augment((64, 40))
    with pytest.raises(SpecError, match="1 \\(gray\\) or 3 \\(RGB\\)"):
        augment(channels=4, stats=flat_stats(4))
    with pytest.raises(SpecError, match="colour statistics have 3 channels"):
        augment(channels=1, stats=flat_stats(3))
    with pytest.raises(SpecError, match="smaller than the 32×32 crop"):
        data.Evaluate(input_size=SIZE, scale=20, channels=3)
    assert TrainingScale.default(224) == (256, 256) and TrainingScale.default(32) == (37, 37)
