"""The machines of one run: ``--nnodes``, ``--rdzv-endpoint`` and ``--rdzv-timeout``, which train and
evaluate share, read into :class:`Machines`.

Several machines started by vggspec itself meet at torchrun's c10d rendezvous (:func:`vggspec.run.distributed.launch`).
Torch-free: the command line checks these flags, and tells the other machines of bad input, before torch is imported.
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple, Protocol

from pydantic import AfterValidator, BaseModel, Field

from ..errors import SpecError
from .flags import command_line

RDZV_PORT = 29400  # torchrun's default port for its c10d rendezvous
RDZV_TIMEOUT = 600  # seconds: torchrun's join_timeout


def _node_counts(text: str) -> str:
    """``--nnodes``: N, or MIN:MAX (1 ≤ MIN ≤ MAX), checked as the flag is read."""
    parts = str(text).strip().split(":")
    try:
        low, high = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (0, 0)
    except ValueError:
        low = high = 0
    if not 1 <= low <= high:
        raise ValueError(f"--nnodes takes N or MIN:MAX (e.g. 2, or 1:2), not '{text}'")
    return f"{low}" if low == high else f"{low}:{high}"


def _endpoint(text: str | None) -> str | None:
    """``--rdzv-endpoint``: HOST or HOST:PORT, as HOST:PORT."""
    if text is None:
        return None
    host, _, port = str(text).strip().rpartition(":") if ":" in str(text) else (str(text).strip(), "", "")
    if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ValueError(f"--rdzv-endpoint takes HOST:PORT (e.g. node1:{RDZV_PORT}), not '{text}'")
    return f"{host}:{port or RDZV_PORT}"


def machine_fields() -> tuple[Any, Any, Any]:
    """The fields of ``--nnodes``, ``--rdzv-endpoint`` and ``--rdzv-timeout``, which train and evaluate share."""
    nnodes = Field(
        default="1",
        description="machines that run together (without torchrun): start the same command on each, with the same "
        "--rdzv-endpoint; MIN:MAX (e.g. 1:2) goes on with as few as MIN when a machine is lost",
        **command_line(metavar="N|MIN:MAX"),
    )
    endpoint = Field(
        default=None,
        description=f"with --nnodes: HOST[:PORT] where the machines meet (port {RDZV_PORT} by default); HOST is one of "
        "them, which serves the rendezvous, and PORT must be free there and open to the others",
        **command_line(metavar="HOST:PORT"),
    )
    timeout = Field(
        default=RDZV_TIMEOUT,
        ge=1,
        description="with --nnodes: seconds to wait for every machine to arrive (and for HOST:PORT to answer) "
        "before stopping with an error",
        **command_line(metavar="SECONDS"),
    )
    return nnodes, endpoint, timeout


NodeCounts = Annotated[str, AfterValidator(_node_counts)]
Endpoint = Annotated[str | None, AfterValidator(_endpoint)]


class Machines(NamedTuple):
    """The machines one run spans: ``low`` to ``high`` of them, meeting at ``endpoint``; waiting ``timeout`` s."""

    low: int = 1
    high: int = 1
    endpoint: str | None = None
    timeout: int = RDZV_TIMEOUT

    @property
    def several(self) -> bool:
        return self.high > 1

    def describe(self) -> str:
        """``2 machines``, ``1 to 2 machines``."""
        count = f"{self.low}" if self.low == self.high else f"{self.low} to {self.high}"
        return f"{count} machine{'s' if self.high > 1 else ''}"


class Rendezvous(BaseModel):
    """The flags of several machines alone, checked as train and evaluate check them: what a machine that stops
    on other bad input needs, to tell the others (the rest of ``values`` is ignored)."""

    nnodes: NodeCounts
    rdzv_endpoint: Endpoint
    rdzv_timeout: int
    nnodes, rdzv_endpoint, rdzv_timeout = machine_fields()


class MachineFlags(Protocol):
    """What :func:`machines` reads: the three flags, as :class:`Rendezvous`, ``TrainConfig`` and ``EvaluateConfig``
    hold them."""

    nnodes: str
    rdzv_endpoint: str | None
    rdzv_timeout: int


def machines(config: MachineFlags) -> Machines:
    """The machines ``config`` asks for; a SpecError for a rendezvous half given."""
    low, _, high = config.nnodes.partition(":")
    found = Machines(int(low), int(high or low), config.rdzv_endpoint, config.rdzv_timeout)
    if found.several and found.endpoint is None:
        raise SpecError(
            f"--nnodes {config.nnodes} needs --rdzv-endpoint HOST:PORT: where the machines meet",
            hint=f"the same on every machine, HOST one of them, e.g. --rdzv-endpoint node1:{RDZV_PORT}",
        )
    if not found.several and found.endpoint is not None:
        raise SpecError(
            "--rdzv-endpoint is where several machines meet: give --nnodes too (e.g. --nnodes 2)",
            hint="on one machine, --nproc N or --gpus N alone starts the processes",
        )
    return found
