"""Image scales: the training scale S (Section 3.1) and the test scales Q (Section 3.2).

Both are the smallest side of the isotropically rescaled image. S is fixed (``256``) or jittered
(``256:512``, drawn per image); it is read once, into a :class:`TrainingScale`, checked against the
network's input before anything runs, and stored in every checkpoint, so that evaluation finds its
Q = S without reading the rest of the training configuration. Torch-free.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from ..errors import SpecError
from ..logs import log

PAPER_S, PAPER_INPUT = 256, 224  # the paper's single training scale for 224×224 crops
PAPER_OFFSET = 32  # Table 4's test scales around a fixed S: S-32, S, S+32
# The largest test scale Q: 16× the paper's largest (512). A square image at Q = 8192 is 67 million
# pixels, and the first layer of a 64-channel net alone needs 17 GB for it in float32; beyond this a
# Q is a typo (an extra digit), and every image would fail for want of memory, not for its file.
MAX_TEST_SCALE = 8192


class TrainingScale(NamedTuple):
    """S_min and S_max (equal for a fixed S): the smallest side of a rescaled training image.

    The one form S takes once read: the trainer resolves it once (:meth:`resolve`), its datasets draw
    from it, its checkpoints store it (:meth:`to_checkpoint`), and evaluation reads it back from them
    (:meth:`from_checkpoint`) for its default Q = S.
    """

    low: int
    high: int

    @classmethod
    def parse(cls, text: str) -> TrainingScale:
        """``'256'`` → (256, 256); ``'256:512'`` → (256, 512). A ValueError says what is wrong."""
        try:
            parts = [int(p) for p in str(text).split(":")]
        except ValueError:
            raise ValueError(f"a scale is a number (256) or a range (256:512), not '{text}'") from None
        if len(parts) == 1:
            parts *= 2
        if len(parts) != 2 or not _ordered_sizes(parts):
            raise ValueError(f"a scale is a number (256) or a range S_min:S_max with S_min ≤ S_max, not '{text}'")
        return cls(parts[0], parts[1])

    @classmethod
    def default(cls, input_size: int) -> TrainingScale:
        """The paper's S = 256 for 224×224 crops, in proportion for other input sizes."""
        s = round(input_size * PAPER_S / PAPER_INPUT)
        return cls(s, s)

    @classmethod
    def resolve(cls, text: str | None, input_size: int) -> TrainingScale:
        """``text`` (a ``--scale``), or the default for ``input_size``; checked to fit the crops."""
        scale = cls.default(input_size) if text is None else cls.parse(text)
        scale.check(input_size)
        return scale

    def check(self, input_size: int) -> None:
        """S_min ≤ S_max, S_min at least the crop's side, and S_max at most :data:`MAX_TEST_SCALE` (the validation
        during training tests at S): a SpecError that says which."""
        if not input_size <= self.low <= self.high:
            raise SpecError(
                f"the training scale {self} does not fit {input_size}×{input_size} crops",
                hint=f"S is the smallest side of the rescaled image: it needs S_min ≥ {input_size} "
                f"and S_min ≤ S_max (the paper: 256, 384 or 256:512 for 224)",
            )
        if self.high > MAX_TEST_SCALE:
            raise SpecError(
                f"the training scale {self} is above {MAX_TEST_SCALE}: an image rescaled to it needs tens of GB "
                "of memory or more",
                hint=f"S is the smallest side of the rescaled image, at most {MAX_TEST_SCALE} "
                "(the paper: 256, 384 or 256:512 for 224)",
            )

    def to_checkpoint(self) -> list[int]:
        """S as a checkpoint stores it (its ``train_scale``): ``[S_min, S_max]``."""
        return [self.low, self.high]

    @classmethod
    def from_entry(cls, value: Any) -> TrainingScale:
        """A checkpoint's ``train_scale`` read back: two positive integers S_min ≤ S_max, else a ValueError."""
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and _ordered_sizes(value)):
            raise ValueError(f"a stored training scale is two sizes S_min ≤ S_max (positive integers), not {value!r}")
        return cls(*value)

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any], input_size: int) -> TrainingScale:
        """The S a checkpoint was trained at: its ``train_scale``; in one written before there was that entry,
        its configuration's ``scale``, or the default for ``input_size``. A SpecError when it cannot be read."""
        try:
            if "train_scale" in checkpoint:
                return cls.from_entry(checkpoint["train_scale"])
            return cls.resolve((checkpoint.get("config") or {}).get("scale"), input_size)
        except ValueError as err:
            raise SpecError(f"the checkpoint's training scale cannot be read: {err}") from None

    @property
    def middle(self) -> int:
        """S itself, or for a jittered S the middle of its range: the paper's Q = 384 for [256, 512]."""
        return (self.low + self.high) // 2

    @property
    def jittered(self) -> bool:
        return self.low != self.high

    def __str__(self) -> str:
        return f"{self.low}:{self.high}" if self.jittered else str(self.low)


def _ordered_sizes(sizes: Sequence[Any]) -> bool:
    """Integers (not booleans), the first at least 1 and at most the second: S_min ≤ S_max."""
    return all(isinstance(s, int) and not isinstance(s, bool) for s in sizes) and 1 <= sizes[0] <= sizes[-1]


def paper_offset(input_size: int) -> int:
    """The paper's ±32 around S (Table 4, for 224-pixel inputs), in proportion for ``input_size``: at least 1."""
    return max(1, round(PAPER_OFFSET * input_size / PAPER_INPUT))


def parse_test_scales(
    text: str | None, train_scale: TrainingScale, input_size: int = PAPER_INPUT, *, say: bool = True
) -> list[int]:
    """Test scales Q from ``'256,384,512'`` or ``'S-32,S,S+32'`` (S: the training scale).

    For a jittered training scale [S_min, S_max], ``S`` is its middle (the paper's Q = 384 for
    [256, 512]) and ``S_min``/``S_max`` its ends. No text: the single scale ``S`` (Table 3).
    ``'paper'``: Table 4's three scales, S−32, S, S+32 for a fixed S and S_min, S, S_max for a
    jittered one; the ±32 is for the paper's 224-pixel inputs, and for a network of another
    ``input_size`` it is in proportion (:func:`paper_offset`), said in a note (``say``). S−32, S,
    S+32 asked of a jittered network is done, with a note that the paper did otherwise.
    """
    scale = train_scale
    if text is not None and text.strip().lower() == "paper":
        offset = paper_offset(input_size)
        text = "S_min,S,S_max" if scale.jittered else f"S-{offset},S,S+{offset}"
        if not scale.jittered and offset != PAPER_OFFSET and say:
            log.warning(
                f"note: --scales paper: the paper's S-{PAPER_OFFSET}, S, S+{PAPER_OFFSET} are for {PAPER_INPUT}-pixel "
                f"inputs; for {input_size}-pixel inputs, S-{offset}, S, S+{offset} ({PAPER_OFFSET} × {input_size}/"
                f"{PAPER_INPUT}, at least one pixel): Q = {scale.middle - offset}, {scale.middle}, "
                f"{scale.middle + offset}"
            )
    elif scale.jittered and text is not None and re.fullmatch(r"(?i)s-32,s,s\+32", re.sub(r"\s", "", text)) and say:
        log.warning(
            f"note: for a network trained at jittered S ({scale}) the paper tested at S_min, S, S_max (Table 4: "
            "--scales paper), not at S-32, S, S+32"
        )
    names = {"s": scale.middle, "s_min": scale.low, "smin": scale.low, "s_max": scale.high, "smax": scale.high}
    out = []
    for token in (text or "S").split(","):
        token = token.strip()
        match = re.fullmatch(r"(?i)(s(?:_?min|_?max)?|\d+)\s*(?:([+-])\s*(\d+))?", token)
        if not match:
            raise SpecError(
                f"cannot read the test scale '{token}'",
                hint="scales are numbers or S-relative: --scales 256,384,512 or --scales S-32,S,S+32",
            )
        base = match.group(1)
        value = int(base) if base.isdigit() else names[base.lower()]
        if match.group(2):
            value += int(match.group(3)) * (1 if match.group(2) == "+" else -1)
        out.append(value)
    return out


def check_test_scales(scales: Sequence[int], input_size: int, name: str = "the network") -> None:
    """Refuse, before any image is read, a Q below the input of the network (``name``) or above
    :data:`MAX_TEST_SCALE`: the one check of test scales, for evaluation and for the validation during training."""
    for q in scales:
        if q < input_size:
            raise SpecError(
                f"the test scale {q} is smaller than {name}'s {input_size}-pixel input",
                hint=f"Q is the smallest side of the rescaled image: it needs Q ≥ {input_size}",
            )
        if q > MAX_TEST_SCALE:
            raise SpecError(
                f"the test scale {q} is above {MAX_TEST_SCALE}: an image rescaled to it needs tens of GB "
                "of memory or more",
                hint=f"Q is the smallest side of the rescaled image, at most {MAX_TEST_SCALE} "
                "(the paper used 224 to 512)",
            )


def parse_train_scales(text: str | None, input_size: int) -> list[TrainingScale]:
    """``--train-scales`` for a network of ``input_size`` pixels: fixed and jittered scales as the paper writes them
    (``256,384,256-512``; ``256:512`` too), for 224-pixel inputs and in proportion for others (rounded, as the
    default S is: 256 → 37 for 32 pixels). None: the spec's own S (the paper's 256, in proportion)."""
    if text is None:
        return [TrainingScale.default(input_size)]
    scales: dict[TrainingScale, str] = {}  # each scale and the token that gave it
    for token in text.split(","):
        token = token.strip()
        match = re.fullmatch(r"(\d+)\s*(?:[-:]\s*(\d+))?", token)
        if not match:
            raise SpecError(
                f"--train-scales: cannot read '{token}'",
                hint="fixed and jittered scales as the paper writes them: --train-scales 256,384,256-512",
            )
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if low > high:
            raise SpecError(f"--train-scales {token}: a jittered scale is S_min-S_max with S_min ≤ S_max")
        scale = TrainingScale(in_proportion(low, input_size), in_proportion(high, input_size))
        said = f"--train-scales {token}" + (
            f" (S = {scale} for {input_size}-pixel inputs)" if scale != (low, high) else ""
        )
        try:
            scale.check(input_size)
        except SpecError as err:
            raise SpecError(f"{said}: {err.message}", hint=err.hint) from None
        if scale in scales:
            here = f" for {input_size}-pixel inputs" if input_size != PAPER_INPUT else ""
            raise SpecError(
                f"--train-scales {scales[scale]} and {token} are both S = {scale}{here}",
                hint="give each training scale once",
            )
        scales[scale] = token
    return list(scales)


def in_proportion(size: int, input_size: int) -> int:
    """A scale the paper gives for 224-pixel inputs, for ``input_size`` pixels (as the default S is rounded)."""
    return size if input_size == PAPER_INPUT else max(1, round(size * input_size / PAPER_INPUT))
