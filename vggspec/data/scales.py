"""Image scales: the training scale S (Section 3.1) and the test scales Q (Section 3.2).

Both are the smallest side of the isotropically rescaled image. S is fixed (``256``) or jittered
(``256:512``, drawn per image); it is read once, into a :class:`TrainingScale`, checked against the
network's input before anything runs, and stored in every checkpoint, so that evaluation finds its
Q = S without reading the rest of the training configuration. Torch-free.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ..errors import SpecError
from ..logs import log

PAPER_S, PAPER_INPUT = 256, 224  # the paper's single training scale for 224×224 crops
# The largest test scale Q: 16× the paper's largest (512). A square image at Q = 8192 is 67 million
# pixels, and the first layer of a 64-channel net alone needs 17 GB for it in float32; beyond this a
# Q is a typo (an extra digit), and every image would fail for want of memory, not for its file.
MAX_TEST_SCALE = 8192


class TrainingScale(NamedTuple):
    """S_min and S_max (equal for a fixed S): the smallest side of a rescaled training image."""

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
        if len(parts) != 2 or parts[0] < 1 or parts[0] > parts[1]:
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
        """S_min ≤ S_max, and S_min at least the crop's side (a SpecError that says so)."""
        if not input_size <= self.low <= self.high:
            raise SpecError(
                f"the training scale {self} does not fit {input_size}×{input_size} crops",
                hint=f"S is the smallest side of the rescaled image: it needs S_min ≥ {input_size} "
                f"and S_min ≤ S_max (the paper: 256, 384 or 256:512 for 224)",
            )

    @property
    def middle(self) -> int:
        """S itself, or for a jittered S the middle of its range: the paper's Q = 384 for [256, 512]."""
        return (self.low + self.high) // 2

    @property
    def jittered(self) -> bool:
        return self.low != self.high

    def __str__(self) -> str:
        return f"{self.low}:{self.high}" if self.jittered else str(self.low)


def parse_test_scales(text: str | None, train_scale: tuple[int, int]) -> list[int]:
    """Test scales Q from ``'256,384,512'`` or ``'S-32,S,S+32'`` (S: the training scale).

    For a jittered training scale [S_min, S_max], ``S`` is its middle (the paper's Q = 384 for
    [256, 512]) and ``S_min``/``S_max`` its ends. No text: the single scale ``S`` (Table 3).
    ``'paper'``: Table 4's three scales, S−32, S, S+32 for a fixed S and S_min, S, S_max for a
    jittered one; S−32, S, S+32 asked of a jittered network is done, with a note that the paper
    did otherwise.
    """
    scale = TrainingScale(*train_scale)
    if text is not None and text.strip().lower() == "paper":
        text = "S_min,S,S_max" if scale.jittered else "S-32,S,S+32"
    elif scale.jittered and text is not None and re.fullmatch(r"(?i)s-32,s,s\+32", re.sub(r"\s", "", text)):
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


def check_test_scales(scales: list[int], input_size: int, name: str) -> None:
    """Refuse, before any image is read, a Q below the network's input or above :data:`MAX_TEST_SCALE`."""
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
