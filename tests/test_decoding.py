"""Reading images at a scale (vggspec/decoding.py): the geometry, and the fast paths against the
straightforward pipeline.

Every image here is drawn in the test and saved in tmp_path; the crops are small (32).
"""

from __future__ import annotations

import math
from contextlib import closing

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision.transforms import functional as TF

from vggspec.data import decoding

from .images import picture

SIZE = 32  # crop side


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (333, 500), (64, 64), (1000, 17)])
def test_rescaled_size_is_torchvisions(size):
    image = Image.new("RGB", size)
    for scale in (17, 40, 256, 301):
        assert TF.resize(image, scale).size == decoding.rescaled_size(*size, scale)


def test_crop_box_stays_inside_and_centres():
    for left in (0.0, 0.5, 0.999999):
        x0, y0, x1, y1 = decoding.crop_box(500, 375, 256, 224, left, 0.999999)
        assert 0 <= x0 and x1 <= 341 and 0 <= y0 and y1 <= 256 and x1 - x0 == 224 == y1 - y0
    assert decoding.crop_box(500, 375, 256, 224) == (58, 16, 282, 240)  # CenterCrop's box


@pytest.mark.parametrize("region_area", [0.0, decoding.REGION_RESAMPLING_AREA, math.inf])
def test_png_fast_path_is_the_reference_pipeline(tmp_path, monkeypatch, region_area):
    """Without DCT draft, both ways of resampling (torch's whole image, PIL's crop region) give
    the whole-image rescale's pixels up to rounding."""
    monkeypatch.setattr(decoding, "REGION_RESAMPLING_AREA", region_area)
    path = str(tmp_path / "a.png")
    picture(300, 200, 1).save(path)
    rng = np.random.default_rng(0)
    for _ in range(8):
        scale, left, top, flip = int(rng.integers(32, 120)), rng.random(), rng.random(), bool(rng.random() < 0.5)
        fast = decoding.render(path, scale, SIZE, left, top, flip, 3)
        ref = decoding.reference_image(path, scale, SIZE, left, top, flip, 3)
        assert (fast.int() - ref.int()).abs().max() <= 1


def test_jpeg_fast_path_close_to_reference(tmp_path):
    """With the 1/2-1/8 DCT draft, only interpolation error separates the two."""
    path = str(tmp_path / "big.jpg")
    picture(1200, 900, 2).save(path, quality=92)
    rng = np.random.default_rng(1)
    factors = set()
    for scale in (40, 100, 150, 250, 500, 1000):
        factors.add(decoding._draft_factor(1200, 900, scale))
        for _ in range(3):
            left, top, flip = rng.random(), rng.random(), bool(rng.random() < 0.5)
            fast = decoding.render(path, scale, SIZE, left, top, flip, 3).float()
            ref = decoding.reference_image(path, scale, SIZE, left, top, flip, 3).float()
            assert (fast - ref).abs().mean() < 1.5, scale
    assert factors == {8, 4, 2, 1}


def test_drafted_size_not_divisible_by_the_factor(tmp_path):
    """333 px at 1/4 is 84 decoded pixels for 83.25 of image: resampling must use the 83.25."""
    path = str(tmp_path / "odd.jpg")
    picture(333, 250, 3, noise=12.0).save(path, quality=95)
    pixels, span, size = decoding.decode(path, 40, 3)
    assert pixels.shape == (3, 63, 84) and span == (333 / 4, 250 / 4) and size == (333, 250)
    # S = 40: torch resamples the whole drafted image; S = 80 (1/2): PIL resamples the crop's region
    for scale, left, top in [(40, 0.0, 0.0), (40, 0.99, 0.99), (40, 0.5, 0.2), (80, 0.99, 0.99), (80, 0.3, 0.7)]:
        fast = decoding.render(path, scale, SIZE, left, top, False, 3).float()
        ref = decoding.reference_image(path, scale, SIZE, left, top, False, 3).float()
        assert (fast - ref).abs().mean() < 1.2  # stretching 84 pixels over the image gives ~3


def test_jpeg_decoders_agree(tmp_path, monkeypatch):
    """TorchCodec's decoder and PIL's (the fallback) give the same pixels."""
    colour, gray = str(tmp_path / "c.jpg"), str(tmp_path / "g.jpg")
    picture(120, 90, 4).save(colour, quality=90)
    picture(120, 90, 5).convert("L").save(gray, quality=90)
    for path in (colour, gray):
        for channels in (3, 1):
            fast, *_ = decoding.decode(path, 60, channels)
            pil, *_ = decoding.decode(path, 60, channels, pil=True)
            assert fast.shape == pil.shape == (channels, 90, 120) and torch.equal(fast, pil)
            rendered = decoding.render(path, 70, SIZE, 0.4, 0.6, True, channels)
            with monkeypatch.context() as patch:
                patch.setattr(decoding, "jpeg_decoder", lambda: None)  # TorchCodec missing, or not loading
                assert torch.equal(decoding.render(path, 70, SIZE, 0.4, 0.6, True, channels), rendered)


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
                assert decoding._plain_jpeg_size(path.read_bytes()) == img.size == (123, 77), (name, mode)
    image.convert("CMYK").save(tmp_path / "cmyk.jpg")
    image.save(tmp_path / "png.png")
    jpeg = (tmp_path / "baseline-RGB.jpg").read_bytes()
    for raw in ((tmp_path / "cmyk.jpg").read_bytes(), (tmp_path / "png.png").read_bytes(), jpeg[:40], b"", b"\xff\xd8"):
        assert decoding._plain_jpeg_size(raw) is None
    # A plain JPEG that needs no DCT reduction never reaches PIL: the header is all it takes.
    path = str(tmp_path / "baseline-RGB.jpg")
    with monkeypatch.context() as patch:
        patch.setattr(decoding.Image, "open", None)
        assert decoding.render(path, 40, SIZE, 0.5, 0.5, False, 3).shape == (3, SIZE, SIZE)


@pytest.mark.parametrize("name", ["small.jpg", "large.jpg", "small.png"])
def test_files_read_whole_or_by_their_head_give_the_same_crops(tmp_path, monkeypatch, name):
    """Above WHOLE_FILE_BYTES only the head is read for the header; every path still gets its bytes."""
    path = str(tmp_path / name)
    # At S = 40 the small JPEG goes to torchvision's decoder, the large one is drafted by 8; S = 160
    # resamples the crop's region with PIL.
    picture(*((60, 45) if name.startswith("small") else (520, 400)), 7).save(path, quality=90)
    expected = [decoding.render(path, scale, SIZE, 0.3, 0.7, True, 3) for scale in (40, 160)]
    monkeypatch.setattr(decoding, "WHOLE_FILE_BYTES", 300)
    with closing(decoding._File(path)) as file:
        assert file._raw is None  # only the head was read
    for scale, crop in zip((40, 160), expected):
        assert torch.equal(decoding.render(path, scale, SIZE, 0.3, 0.7, True, 3), crop)


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
    fast = decoding.render(path, scale, SIZE, left, top, flip, 3)
    ref = decoding.reference_image(path, scale, SIZE, left, top, flip, 3)
    assert fast.shape == ref.shape == (3, SIZE, SIZE) and fast.dtype == torch.uint8
    if fmt == "png" or decoding._draft_factor(width, height, scale) == 1:
        w, h = decoding.rescaled_size(width, height, scale)
        region = w * h > decoding.REGION_RESAMPLING_AREA * SIZE * SIZE
        assert (fast.int() - ref.int()).abs().max() <= (2 if region else 1)
    else:
        assert (fast.float() - ref.float()).abs().mean() < 6.0


def test_draft_keeps_smallest_side_at_least_s():
    assert decoding._draft_factor(4000, 3000, 256) == 8  # 375 ≥ 256
    assert decoding._draft_factor(4000, 3000, 400) == 4  # 750
    assert decoding._draft_factor(2000, 1500, 256) == 4  # 375
    assert decoding._draft_factor(500, 375, 256) == 1
    assert decoding._draft_factor(500, 375, 187) == 2  # 187.5
