"""Reading an image file into a uint8 tensor at a scale: the crop geometry and the JPEG fast paths.

Its own module because decoding is where the pipeline's time goes and where it departs from the
textbook (:func:`reference_image`): the datasets (:mod:`vggspec.data.datasets`), the colour
statistics (:mod:`vggspec.data.colour`) and evaluation (:mod:`vggspec.run.evaluate`) ask it for pixels
and know nothing of how they are decoded.

Every path gives the image as viewers show it (:func:`viewed`, and :data:`UPRIGHT` for the orientation):

* upright: the EXIF orientation applied, as ``PIL.ImageOps.exif_transpose`` applies it (a phone stores
  a portrait photo landscape, with orientation 6). The size every crop is computed from is the
  upright one, whether it comes from a JPEG's frame header or from PIL;
* 8 bits a channel: 16-bit images keep their high byte (``>> 8``: PIL's own 16-bit RGB and RGBA
  decoding does that, so a 16-bit gray image and its colour twin give the same levels; the rounded
  ``× 255 / 65535`` would differ from it by at most one level, at a division's cost);
* without transparency: transparent pixels over white, as a browser shows them (the colour stored
  under them is arbitrary, often black), then PIL's conversion to RGB or gray (palettes, CMYK,
  1-bit).

A crop at scale S (:func:`render`) is computed without decoding or resampling more pixels than
needed:

1. JPEGs much larger than needed are decoded at 1/2, 1/4 or 1/8 of their size in the DCT domain
   (``Image.draft``): the largest reduction that keeps the smallest side ≥ S (for a rotated or
   mirrored one, that also divides both sides); other JPEGs go straight from libjpeg-turbo into
   a tensor (TorchCodec's ``decode_jpeg``, which applies the EXIF orientation itself), sized and
   oriented from their header without PIL;
2. the image is rescaled with torch's uint8 antialiased bilinear kernel (torchvision's
   ``Resize`` on tensors: within 1 of PIL's, about twice as fast), then cropped and flipped;
   when the rescaled image is many times the crop (S jittered towards 512), PIL resamples the
   crop's region alone instead (``Image.resize(size, box=region)``, the same filter). Without
   step 1's reduction this is the standard pipeline's crop up to rounding, with it they differ
   by the DCT downscaling's small interpolation difference;
3. the crop stays a uint8 tensor, in the interleaved (H, W, C) memory decoders write (batches
   are channels-last); the float conversion, mean subtraction and the layout the model wants
   happen on the device (:func:`vggspec.data.datasets.to_device`).

:func:`rescale` is the whole image at a scale (Q at test time), decoded the same way; :func:`centre_crop`
validation's crop, :func:`thumbnail` what the colour statistics measure, :func:`image_size` the upright
size from the header.
"""

from __future__ import annotations

import functools
import io
import os
import struct
from collections.abc import Callable
from contextlib import closing
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import SpecError

__all__ = [
    "centre_crop",
    "crop_box",
    "decode",
    "image_size",
    "jpeg_decoder",
    "pil_mode",
    "reference_image",
    "render",
    "rescale",
    "rescaled_size",
    "thumbnail",
    "viewed",
]

DRAFT_FACTORS = (8, 4, 2)  # the DCT-domain reductions libjpeg offers through Image.draft
# Above this many crops' area, resampling the crop's region with PIL (box=) costs less than
# resampling the whole image with torch (tools/bench_data.py).
REGION_RESAMPLING_AREA = 4.0
WHOLE_FILE_BYTES = 256 * 1024  # read whole below this size; above, the first this many bytes for the header

ORIENTATION_TAG = 0x0112  # EXIF's Orientation, 1 (upright) to 8
# How each orientation turns the stored pixels upright: ImageOps.exif_transpose's table.
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# PIL's modes of 16-bit gray files: PNG and TIFF ("I;16…"), PGM ("I", 32-bit integers holding 0-65535).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
BACKGROUND = (255, 255, 255)  # what transparent pixels show: a browser's white page


def pil_mode(channels: int) -> str:
    """PIL's mode for a spec's channels: "L" (gray) or "RGB"; a SpecError for any other count."""
    if channels not in (1, 3):
        raise SpecError(
            f"images have 1 (gray) or 3 (RGB) channels, not {channels}",
            hint="use 'input: 224x224 RGB' or 'input: 224x224 gray' in the spec to train on image files",
        )
    return "L" if channels == 1 else "RGB"


def rescaled_size(width: int, height: int, scale: int) -> tuple[int, int]:
    """The size with the smallest side ``scale``, rounded as torchvision's ``Resize(scale)`` rounds."""
    if width <= height:
        return scale, int(scale * height / width)
    return int(scale * width / height), scale


def crop_box(
    width: int, height: int, scale: int, size: int, left: float | None = None, top: float | None = None
) -> tuple[int, int, int, int]:
    """The crop (x0, y0, x1, y1) in the image rescaled to ``scale``.

    ``left``/``top`` in [0, 1) place it uniformly over ``RandomCrop``'s positions,
    ``floor(u · (room + 1))``; ``None`` centres it as ``CenterCrop`` does.
    """
    w, h = rescaled_size(width, height, scale)
    x = int(round((w - size) / 2.0)) if left is None else min(int(left * (w - size + 1)), w - size)
    y = int(round((h - size) / 2.0)) if top is None else min(int(top * (h - size + 1)), h - size)
    return x, y, x + size, y + size


def _draft_factor(width: int, height: int, scale: int, *, exact: bool = False) -> int:
    """The largest DCT reduction (8, 4, 2) that keeps the smallest side ≥ ``scale``, or 1; ``exact``: only
    one that divides both sides (the reduced image then covers the whole image, with no partial last
    column or row, which turning a rotated or mirrored image upright would move to the left or top)."""
    for factor in DRAFT_FACTORS:
        if min(width, height) / factor >= scale and not (exact and (width % factor or height % factor)):
            return factor
    return 1


def _upright_size(size: tuple[float, float], orientation: int) -> tuple[float, float]:
    """``size`` (width, height) of the stored pixels as the upright image has it: swapped by a quarter turn."""
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def _upright(img: Image.Image, orientation: int) -> Image.Image:
    """``img`` turned upright as EXIF ``orientation`` says (1 and unknown values: as it is)."""
    method = UPRIGHT.get(orientation)
    return img if method is None else img.transpose(method)


def _orientation(img: Image.Image) -> int:
    """PIL's reading of the EXIF orientation (what ``exif_transpose`` applies), from the file's header: a
    PNG's EXIF counts where the PNG specification puts it, before the pixels. 1 for a broken EXIF block,
    which viewers ignore too."""
    try:
        return int(img.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - PIL raises many types for a malformed EXIF block
        return 1


def viewed(img: Image.Image, mode: str) -> Image.Image:
    """``img`` in ``mode`` ("RGB" or "L") as a viewer shows it, orientation aside: 16-bit levels to their
    high byte, transparent pixels over white, then PIL's conversion (palette, CMYK, 1-bit, luma)."""
    if img.mode in SIXTEEN_BIT_MODES:  # PIL's convert clips them: 99.6% of a 0-65535 gradient became 255
        levels = np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
        img = Image.fromarray((levels >> 8).astype(np.uint8))
    elif img.mode in TRANSPARENT_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (*BACKGROUND, 255)), rgba)
    return img if img.mode == mode else img.convert(mode)


def decode(
    path: str, scale: int, channels: int, *, pil: bool = False
) -> tuple[torch.Tensor, tuple[float, float], tuple[int, int]]:
    """The upright pixels, decoded no larger than rescaling to ``scale`` needs: (pixels, span, (width, height)).

    ``pixels`` is uint8 (C, h, w); ``span`` is how many of its columns and rows the image
    covers: (width / f, height / f) when a JPEG whose smallest side is ≥ 2·S was decoded at 1/f
    of its size (f = 2, 4, 8) in the DCT domain (``Image.draft``), where the last decoded column
    or row may be partly padding. Any other JPEG goes from TorchCodec's libjpeg-turbo decoder
    straight into a tensor (:func:`jpeg_decoder`: PIL's pixels, sooner), unless ``pil`` asks for
    PIL. The rest goes through PIL. Gray from a colour JPEG is its luma. (width, height) is the
    upright image's. Raises what the decoders raise for bad files.
    """
    with closing(_File(path)) as file:
        return _decode(file, scale, channels, pil)


def image_size(path: str) -> tuple[int, int]:
    """(width, height) of the image as viewers show it (EXIF orientation applied), from its header."""
    with closing(_File(path)) as file:
        return file.size


class _File:
    """An image file, read once. A plain JPEG's size and orientation come from its header, so PIL
    parses only the files that need it (other formats, DCT reduction, region resampling). Files up to
    ``WHOLE_FILE_BYTES`` are read whole; of larger ones only the head, for the header: they are
    mostly photos to decode at reduced size, which PIL reads from the path in small chunks
    (reading 5 MB into fresh memory first costs more than a ms). ``size`` is the upright image's."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "rb") as file:
            self._raw = file.read() if os.fstat(file.fileno()).st_size <= WHOLE_FILE_BYTES else None
            head = self._raw if self._raw is not None else file.read(WHOLE_FILE_BYTES)
        self.jpeg = _plain_jpeg_header(head)
        self._image: Image.Image | None = None
        if self.jpeg is not None:
            stored, self.orientation = self.jpeg.size, self.jpeg.orientation
        else:  # before any draft, which changes image.size
            stored, self.orientation = self.image.size, _orientation(self.image)
        self.size: tuple[int, int] = _upright_size(stored, self.orientation)  # type: ignore[assignment]

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            with open(self.path, "rb") as file:
                self._raw = file.read()
        return self._raw

    @property
    def image(self) -> Image.Image:
        if self._image is None:  # bytes already read: BytesIO shares them
            self._image = Image.open(self.path if self._raw is None else io.BytesIO(self._raw))
        return self._image

    def draft_factor(self, scale: int) -> int:
        """:func:`_draft_factor` for this image: for one stored rotated or mirrored, an exact one."""
        return _draft_factor(*self.size, scale, exact=self.orientation != 1)

    def close(self) -> None:
        if self._image is not None:
            self._image.close()


class _JpegHeader(NamedTuple):
    size: tuple[int, int]  # (width, height) of the stored pixels
    orientation: int  # EXIF orientation, 1-8 (1 without one)


def _plain_jpeg_header(raw: bytes | bytearray) -> _JpegHeader | None:
    """The size (frame header) and EXIF orientation of an 8-bit Huffman-coded JPEG with 1 or 3
    components (PIL's "L" and "RGB": what TorchCodec's decoder gives the same pixels for); None for
    anything else, including whatever cannot be parsed or whose orientation might be read otherwise by
    TorchCodec than by PIL (two EXIF blocks, an unusual Orientation entry, an XMP orientation without
    an EXIF one): PIL then has its say."""
    if raw[:2] != b"\xff\xd8":
        return None
    i, end = 2, len(raw)
    size: tuple[int, int] | None = None
    exif: list[bytes] = []
    xmp_orientation = False
    while i + 4 <= end:
        if raw[i] != 0xFF:
            return None
        marker = raw[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a segment
            i += 2
        elif marker == 0xDA:  # the first scan: every segment PIL and libjpeg read is behind
            if size is None or len(exif) > 1:
                return None
            orientation = _exif_orientation(exif[0]) if exif else 1
            if orientation is None or (xmp_orientation and not (exif and _has_orientation(exif[0]))):
                return None
            return _JpegHeader(size, orientation)
        elif marker in (0xC0, 0xC1, 0xC2):  # baseline, extended sequential, progressive
            if i + 10 > end or size is not None:
                return None
            bits, components = raw[i + 4], raw[i + 9]
            height, width = raw[i + 5] << 8 | raw[i + 6], raw[i + 7] << 8 | raw[i + 8]
            if not (bits == 8 and components in (1, 3) and width and height):
                return None
            size = (width, height)
            i += 2 + (raw[i + 2] << 8 | raw[i + 3])
        elif 0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) or marker == 0xD9:
            return None  # another kind of frame, or the end before any scan
        else:  # a segment: noted if it is EXIF or XMP, skipped by its length
            length = raw[i + 2] << 8 | raw[i + 3]
            if marker == 0xE1:
                segment = bytes(raw[i + 4 : i + 2 + length])
                if len(segment) < length - 2:
                    return None  # cut off by the head read: not a header to decide from
                if segment.startswith(b"Exif\0\0"):
                    exif.append(segment[6:])
                elif segment.startswith(b"http://ns.adobe.com/xap/1.0/\0") and b"tiff:Orientation" in segment:
                    xmp_orientation = True
            i += 2 + length
    return None


def _exif_entries(tiff: bytes) -> list[tuple[int, int, int, bytes]] | None:
    """The first IFD's entries (tag, type, count, 4 value bytes) of an EXIF block (a TIFF header and IFDs);
    None if it is malformed."""
    if len(tiff) < 8:
        return None
    if tiff[:4] == b"II*\0":
        endian = "<"
    elif tiff[:4] == b"MM\0*":
        endian = ">"
    else:
        return None
    (offset,) = struct.unpack_from(endian + "I", tiff, 4)
    if offset + 2 > len(tiff):
        return None
    (count,) = struct.unpack_from(endian + "H", tiff, offset)
    if offset + 2 + 12 * count > len(tiff):
        return None
    entries = []
    for k in range(count):
        at = offset + 2 + 12 * k
        tag, kind, n = struct.unpack_from(endian + "HHI", tiff, at)
        entries.append((tag, kind, n, tiff[at + 8 : at + 12]))
    return entries


def _has_orientation(tiff: bytes) -> bool:
    return any(tag == ORIENTATION_TAG for tag, *_ in _exif_entries(tiff) or [])


def _exif_orientation(tiff: bytes) -> int | None:
    """The Orientation (1-8) of an EXIF block, 1 without one; None when it is malformed or the entry is
    unusual (not one SHORT 1-8, or twice), which PIL and libjpeg-based decoders might read apart."""
    entries = _exif_entries(tiff)
    if entries is None:
        return None
    found = [(kind, n, value) for tag, kind, n, value in entries if tag == ORIENTATION_TAG]
    if not found:
        return 1
    if len(found) > 1 or found[0][:2] != (3, 1):
        return None
    orientation = int.from_bytes(found[0][2][:2], "little" if tiff[:2] == b"II" else "big")  # left-justified
    return orientation if 1 <= orientation <= 8 else None


@functools.cache
def jpeg_decoder() -> Callable[[torch.Tensor, int], torch.Tensor] | None:
    """TorchCodec's JPEG decoder, ``decode(data, channels)``: libjpeg-turbo straight into a tensor, the
    same pixels as PIL's, in 0.6 of PIL's time with its conversion, and the GIL released (evaluation
    decodes in threads); it applies the EXIF orientation itself. None where TorchCodec is not installed
    or does not load (built for another torch): PIL decodes every JPEG then. torchvision's decoders,
    used before, are deprecated since 0.29.
    """
    try:
        from torchcodec.decoders import decode_jpeg
    except Exception:  # noqa: BLE001 - ImportError, or its libraries' OSError/RuntimeError for another torch
        return None
    modes = {3: "RGB", 1: "GRAY"}
    return lambda data, channels: decode_jpeg(data, mode=modes[channels])


def _decode(
    file: _File, scale: int, channels: int, pil: bool
) -> tuple[torch.Tensor, tuple[float, float], tuple[int, int]]:
    size = file.size
    if file.jpeg and file.draft_factor(scale) == 1 and not pil and (decode := jpeg_decoder()):
        raw = torch.frombuffer(bytearray(file.raw), dtype=torch.uint8)  # writable: no warning from torch
        pixels = decode(raw, channels)  # upright: TorchCodec applies the orientation the header gave
        if pixels.shape[1:] == (size[1], size[0]):
            return pixels, size, size
        # Turned otherwise than the header says (TorchCodec reads some EXIF otherwise): PIL's is the definition.
    img, span = _pil_pixels(file, scale, channels)
    return _to_tensor(img), span, size


def _pil_pixels(file: _File, scale: int, channels: int) -> tuple[Image.Image, tuple[float, float]]:
    """The file decoded by PIL (drafted as :func:`decode` says), :func:`viewed` in the spec's mode and
    upright; and its span."""
    img = file.image
    mode = pil_mode(channels)
    factor = file.draft_factor(scale)
    # Only JPEGs honour draft: a reduction by `factor` (and for gray, the luma alone).
    drafted = img.draft(mode, (img.size[0] // factor, img.size[1] // factor) if factor > 1 else None)
    span = drafted[1][2:] if drafted else img.size
    return _upright(viewed(img, mode), file.orientation), _upright_size(span, file.orientation)


def _resized(pixels: torch.Tensor, span: tuple[float, float], width: int, height: int) -> torch.Tensor:
    """The first ``span`` columns and rows of ``pixels`` resampled to width × height.

    torchvision's ``Resize`` filter on tensors: bilinear with antialiasing, torch's uint8 kernel
    (which follows PIL's: within 1 of it). A fractional span (a drafted JPEG) goes through
    ``scale_factor``, which maps output pixel i to input position (i + ½) / scale − ½ exactly.
    Pixels in interleaved memory (as decoders write them) come back interleaved: the kernel
    works that way, and writing planar output would cost it half as much again.
    """
    rows, cols = pixels.shape[-2:]
    if (cols, rows) == span == (width, height):
        return pixels
    if (cols, rows) == span:
        size, factors = (height, width), None
    else:  # floor(rows · height / span) ≥ height as rows ≥ span; the nudge keeps rounding from losing one
        size, factors = None, (height / span[1] * (1 + 1e-9), width / span[0] * (1 + 1e-9))
    batch = pixels.permute(1, 2, 0)[None].permute(0, 3, 1, 2)  # N = 1 with channels-last strides, if (H, W, C)
    resized = torch.nn.functional.interpolate(
        batch, size, factors, mode="bilinear", antialias=True, align_corners=False, recompute_scale_factor=False
    )
    return resized[0, :, :height, :width]


def _interleaved(image: torch.Tensor, flip: bool) -> torch.Tensor:
    """``image`` (C, H, W), mirrored if ``flip``, in compact (H, W, C) memory: no view of a larger image.

    Samples keep the decoders' interleaved layout: copying it is a row-wise memcpy where a
    planar copy is a strided gather, about 10× slower for uint8.
    """
    if flip:
        image = image.flip(2)  # a copy, in the same layout
    return image.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # no copy if already compact


def render(
    path: str, scale: int, size: int, left: float | None, top: float | None, flip: bool, channels: int
) -> torch.Tensor:
    """One crop: :func:`decode`, rescale so the smallest side is ``scale``, crop, flip.

    The same pixels, up to interpolation error, as :func:`reference_image` (PIL and torchvision's
    ``Resize`` on the whole full-size image). When the rescaled image is many times the crop's
    area (scale jittering up to 512), PIL resamples the crop's region alone (``box=``, the same
    filter), which then costs less than torch resampling the whole image. Returns uint8
    (C, size, size) in interleaved (H, W, C) memory; raises for bad files.
    """
    with closing(_File(path)) as file:
        width, height = file.size
        w, h = rescaled_size(width, height, scale)
        x0, y0, x1, y1 = crop_box(width, height, scale, size, left, top)
        if w * h > REGION_RESAMPLING_AREA * size * size:
            img, (span_w, span_h) = _pil_pixels(file, scale, channels)
            sx, sy = span_w / w, span_h / h  # decoded pixels per rescaled pixel
            # (clamped: x1 · sx can exceed the width by a rounding error, which PIL refuses)
            box = (x0 * sx, y0 * sy, min(x1 * sx, img.size[0]), min(y1 * sy, img.size[1]))
            crop = _to_tensor(img.resize((size, size), Image.Resampling.BILINEAR, box=box))
        else:
            pixels, span, _ = _decode(file, scale, channels, pil=False)
            crop = _resized(pixels, span, w, h)[:, y0:y1, x0:x1]
    return _interleaved(crop, flip)


def rescale(path: str, scale: int, channels: int) -> torch.Tensor:
    """The whole image with its smallest side rescaled to ``scale`` (Q at test time, Section 3.2).

    uint8 (C, H, W) in interleaved memory, decoded and resampled as in :func:`render` (both release
    the GIL: evaluation decodes in threads).
    """
    pixels, span, (width, height) = decode(path, scale, channels)
    return _resized(pixels, span, *rescaled_size(width, height, scale))


def centre_crop(path: str, scale: int, size: int, channels: int) -> torch.Tensor:
    """The centre crop as torchvision's evaluation transform makes it from a PIL image (``Resize(scale)``,
    ``CenterCrop(size)``) turned upright, the same pixels: PIL's bilinear filter on the whole image.

    The one crop validation and ``--method center`` see, so that a run's validation error and a
    pretrained network's scores compare with torchvision's. Not :func:`render`'s torch kernel: it is
    within 1 of PIL's, which moves a confident network's probabilities by about 2·10⁻⁴. Only a JPEG at
    least twice ``scale`` on its smallest side departs from it, decoded at reduced size (DCT) first as
    everywhere (``Image.draft``): what keeps a photo from a phone from costing 5× as much.
    uint8 (C, size, size) in interleaved memory; raises for bad files.
    """
    with closing(_File(path)) as file:
        width, height = file.size
        img, span = _pil_pixels(file, scale, channels)
        whole = img.resize(rescaled_size(width, height, scale), Image.Resampling.BILINEAR, box=(0, 0, *span))
        crop = whole.crop(crop_box(width, height, scale, size))
    return _interleaved(_to_tensor(crop), False)


def thumbnail(path: str, side: int, channels: int) -> torch.Tensor:
    """The image reduced to at most ``side`` pixels along its longer side, as viewers show it: uint8 (C, h, w).

    What the colour statistics measure (:func:`vggspec.data.colour.colour_stats`): a JPEG decoded at the
    largest DCT reduction that keeps both sides ≥ ``side`` (``Image.draft``), then box-filtered. Turned
    upright last, where it costs least (box filtering and turning commute, up to rounding).
    """
    mode = pil_mode(channels)
    with closing(_File(path)) as file:
        img = file.image
        img.draft(mode, (side, side))
        img = viewed(img, mode)
        img.thumbnail((side, side), Image.Resampling.BOX, reducing_gap=None)
        return _to_tensor(_upright(img, file.orientation))


def _to_tensor(img: Image.Image) -> torch.Tensor:
    """uint8 (C, H, W) viewing an (H, W, C) array: no float conversion, no transposing copy."""
    array = np.array(img)  # writable (np.asarray of a PIL image is read-only)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1)


def reference_image(
    path: str, scale: int, size: int, left: float | None, top: float | None, flip: bool, channels: int
) -> torch.Tensor:
    """The straightforward pipeline :func:`render` must match (for tests and the benchmark).

    Decode the whole image, turn it upright (``ImageOps.exif_transpose``), convert it as viewers show it
    (:func:`viewed`), rescale it whole with torchvision's ``Resize(scale)`` (bilinear, antialiased), crop
    the same box, flip. uint8 (C, size, size).
    """
    from torchvision.transforms import functional as F

    with Image.open(path) as img:
        img = viewed(ImageOps.exif_transpose(img), pil_mode(channels))
    width, height = img.size
    x0, y0, x1, y1 = crop_box(width, height, scale, size, left, top)
    img = F.resize(img, scale, interpolation=F.InterpolationMode.BILINEAR)
    crop = img.crop((x0, y0, x1, y1))
    if flip:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _to_tensor(crop)
