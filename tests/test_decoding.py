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
from PIL import Image, ImageOps
from torchvision.transforms import functional as TF

from vggspec.data import decoding

from .images import picture, save_oriented, save_png16

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


def test_jpeg_header_gives_pils_size_and_orientation_or_leaves_the_file_to_pil(tmp_path, monkeypatch):
    """The header parser sizes and orients the JPEGs TorchCodec decodes (and only those) as PIL does."""
    image = picture(123, 77, 6)
    exif = Image.Exif()
    exif[0x0112] = 6
    variants = {
        "baseline": ({"quality": 90}, 1),
        "progressive": ({"quality": 80, "progressive": True}, 1),
        "444 with exif and icc": ({"subsampling": 0, "exif": exif.tobytes(), "icc_profile": b"\0" * 600}, 6),
        "restart markers": ({"restart_marker_blocks": 4}, 1),
    }
    for name, (options, orientation) in variants.items():
        for mode in ("RGB", "L"):
            path = tmp_path / f"{name}-{mode}.jpg"
            image.convert(mode).save(path, **options)
            with Image.open(path) as img:
                header = decoding._plain_jpeg_header(path.read_bytes())
                assert header == (img.size, img.getexif().get(0x0112, 1)) == ((123, 77), orientation), (name, mode)
    image.convert("CMYK").save(tmp_path / "cmyk.jpg")
    image.save(tmp_path / "png.png")
    jpeg = (tmp_path / "baseline-RGB.jpg").read_bytes()
    for raw in ((tmp_path / "cmyk.jpg").read_bytes(), (tmp_path / "png.png").read_bytes(), jpeg[:40], b"", b"\xff\xd8"):
        assert decoding._plain_jpeg_header(raw) is None
    # Orientations PIL might read otherwise than TorchCodec go to PIL: an XMP one without EXIF's, a LONG entry.
    xmp = b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    image.save(tmp_path / "xmp.jpg", xmp=xmp)
    with Image.open(tmp_path / "xmp.jpg") as img:
        assert img.getexif().get(0x0112) == 6
    short, long = b"\x01\x12\x00\x03\0\0\0\x01\0\x06\0\0", b"\x01\x12\x00\x04\0\0\0\x01\0\0\0\x06"  # big-endian
    assert exif.tobytes().count(short) == 1
    image.save(tmp_path / "long.jpg", exif=exif.tobytes().replace(short, long))
    with Image.open(tmp_path / "long.jpg") as img:
        assert img.getexif().get(0x0112) == 6
    for name in ("xmp.jpg", "long.jpg"):
        assert decoding._plain_jpeg_header((tmp_path / name).read_bytes()) is None, name
    # A plain JPEG that needs no DCT reduction never reaches PIL: the header is all it takes, orientation too.
    for path in (str(tmp_path / "baseline-RGB.jpg"), str(tmp_path / "444 with exif and icc-RGB.jpg")):
        with monkeypatch.context() as patch:
            patch.setattr(decoding.Image, "open", None)
            assert decoding.render(path, 40, SIZE, 0.5, 0.5, False, 3).shape == (3, SIZE, SIZE)
            assert decoding.image_size(path) == ((123, 77) if "baseline" in path else (77, 123))


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


# -- as viewers show them: orientation, bit depth, transparency ------------------------------


def _upright(path) -> Image.Image:
    """What every viewer shows: PIL's own reading of the EXIF orientation."""
    with Image.open(path) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


def _tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)


@pytest.mark.parametrize("torchcodec", [True, False])
@pytest.mark.parametrize("whole", [True, False])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_exif_oriented_jpeg_is_upright_on_every_path(tmp_path, monkeypatch, orientation, whole, torchcodec):
    """A phone's JPEG (stored landscape, EXIF orientation 6; and the 7 others) gives exif_transpose's pixels,
    within JPEG tolerance, through every path: TorchCodec's decoder or PIL's, the file read whole or by its
    head, a DCT-reduced decode or a full one (206×302 at S = 40: reduced by 4, or by 2 when turned, as the
    reduction must then divide both sides), torch's resampling or PIL's region resampling (S = 120), the
    centre crop, the thumbnail the colour statistics measure and the header's size."""
    if not whole:
        monkeypatch.setattr(decoding, "WHOLE_FILE_BYTES", 300)
    if not torchcodec:
        monkeypatch.setattr(decoding, "jpeg_decoder", lambda: None)
    elif decoding.jpeg_decoder() is None:
        pytest.fail("TorchCodec does not load here: this case would test PIL twice")
    shown = picture(206, 302, 11)  # upright: portrait
    path = str(save_oriented(tmp_path / "phone.jpg", shown, orientation, quality=95))
    upright = _upright(path)
    assert upright.size == decoding.image_size(path) == (206, 302)
    full, span, size = decoding.decode(path, 302, 3)
    assert full.shape == (3, 302, 206) and span == size == (206, 302)
    assert (full.int() - _tensor(upright).int()).abs().max() <= 1  # libjpeg's pixels, turned: no resampling
    for scale in (40, 60, 120):
        for left, top, flip in ((0.1, 0.8, False), (0.9, 0.3, True)):
            crop = decoding.render(path, scale, SIZE, left, top, flip, 3)
            reference = decoding.reference_image(path, scale, SIZE, left, top, flip, 3)
            assert (crop.float() - reference.float()).abs().mean() < 2.5, (scale, left, top)
        rescaled = decoding.rescale(path, scale, 3)
        expected = _tensor(TF.resize(upright, scale))
        assert rescaled.shape == expected.shape and (rescaled.float() - expected.float()).abs().mean() < 2.5
        centre = decoding.centre_crop(path, scale, SIZE, 3)
        expected = decoding.reference_image(path, scale, SIZE, None, None, False, 3)
        assert (centre.float() - expected.float()).abs().mean() < 2.5
    small = upright.copy()
    small.thumbnail((48, 48), Image.Resampling.BOX, reducing_gap=None)
    thumb = decoding.thumbnail(path, 48, 3)
    assert thumb.shape == (3, 48, 33) and (thumb.float() - _tensor(small).float()).abs().mean() < 4  # DCT, box


def test_a_sideways_crop_would_be_seen():
    """The tolerance above is not loose: the same crop of the image seen sideways differs by tens."""
    shown = picture(206, 302, 11)
    sideways = shown.transpose(Image.Transpose.ROTATE_90).resize((206, 302))
    assert (_tensor(shown).float() - _tensor(sideways).float()).abs().mean() > 20


def test_sixteen_bit_images_keep_their_levels_as_the_high_byte(tmp_path):
    """A 0-65535 gradient keeps its 256 levels (PIL's conversion clipped 99.6% of it to 255), as its high byte:
    what PIL gives for the same picture saved as 16-bit RGB, whose levels the gray file must match."""
    levels = np.arange(256 * 256, dtype=np.uint32).reshape(256, 256).astype(np.uint16)  # 0 … 65535
    expected = torch.from_numpy((levels >> 8).astype(np.uint8))
    Image.fromarray(levels).save(tmp_path / "gray.png")  # PIL's "I;16"
    Image.fromarray(levels).save(tmp_path / "gray.pgm")  # PIL's "I"
    save_png16(tmp_path / "colour.png", np.stack([levels] * 3, axis=-1))
    for name in ("gray.png", "gray.pgm", "colour.png"):
        path = str(tmp_path / name)
        for channels in (1, 3):
            pixels, _, _ = decoding.decode(path, 256, channels)
            assert pixels.shape == (channels, 256, 256)
            assert all(torch.equal(pixels[c], expected) for c in range(channels)), (name, channels)
        assert torch.equal(decoding.centre_crop(path, 256, 256, 1)[0], expected)
        assert decoding.render(path, 64, SIZE, 0.5, 0.5, False, 1).float().mean() == pytest.approx(127.5, abs=2)
        assert decoding.thumbnail(path, 16, 1).float().mean() == pytest.approx(127.5, abs=1)


def test_palettes_transparency_cmyk_and_one_bit_images_convert_as_a_viewer_shows_them(tmp_path):
    """Palettes give their colours; transparent pixels show white (a browser's page), whatever colour is stored
    under them; CMYK JPEGs give their RGB; 1-bit images black and white; a GIF its first frame."""
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[:, :4] = (200, 30, 10)  # left half red, right half black
    palette = Image.fromarray(rgb).quantize(2)
    palette.save(tmp_path / "palette.png")
    hidden = palette.getpixel((6, 0))  # the black half's index: transparent, shown white
    palette.save(tmp_path / "palette-transparent.png", transparency=hidden)
    palette.save(tmp_path / "palette-transparent.gif", transparency=hidden)
    rgba = np.dstack([rgb, np.full((8, 8), 255, np.uint8)])
    rgba[:, 4:, 3] = 0  # black, but invisible
    rgba[:2, :4, 3] = 128  # half-covering red
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgba, "RGBA").convert("LA").save(tmp_path / "la.png")
    Image.fromarray(rgb).convert("1").save(tmp_path / "bits.png")

    def pixels(name: str, channels: int = 3) -> np.ndarray:
        decoded, _, _ = decoding.decode(str(tmp_path / name), 8, channels)
        return decoded.permute(1, 2, 0).numpy().astype(int)

    red, white = np.array([200, 30, 10]), np.array([255, 255, 255])
    assert (pixels("palette.png")[:, :4] == red).all() and (pixels("palette.png")[:, 4:] == 0).all()
    for name in ("palette-transparent.png", "palette-transparent.gif"):
        assert (pixels(name)[:, :4] == red).all() and (pixels(name)[:, 4:] == white).all(), name
    over_white = np.round(red * 128 / 255 + white * 127 / 255)
    seen = pixels("rgba.png")
    assert (seen[:, 4:] == white).all() and (seen[2:, :4] == red).all()
    assert np.abs(seen[:2, :4] - over_white).max() <= 1
    gray = pixels("la.png", 1)[..., 0]
    luma = round(0.299 * 200 + 0.587 * 30 + 0.114 * 10)
    assert (gray[:, 4:] == 255).all() and np.abs(gray[2:, :4] - luma).max() <= 1
    assert np.abs(gray[:2, :4] - round(luma * 128 / 255 + 255 * 127 / 255)).max() <= 1
    assert set(np.unique(pixels("bits.png"))) == {0, 255} and (pixels("bits.png")[:, 4:] == 0).all()
    photo = picture(64, 48, 12)
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    cmyk, _, _ = decoding.decode(str(tmp_path / "cmyk.jpg"), 48, 3)
    assert cmyk.shape == (3, 48, 64) and (cmyk.float() - _tensor(photo).float()).abs().mean() < 3
