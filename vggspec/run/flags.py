"""How a setting shows on the command line, where its field's name and type alone do not say it.

The configurations (:mod:`.config`, :mod:`.rendezvous`) mark their fields with :func:`command_line`;
the command line reads the marks to build ``vggspec train --help`` and ``vggspec evaluate --help``.
Torch-free.
"""

from __future__ import annotations

from typing import Any


def command_line(**how: str) -> dict[str, Any]:
    """A field's command-line form where its name alone does not say it: ``flag`` (another name),
    ``metavar``, ``nargs`` (a positional argument), ``default_note`` (what --help says of the default)."""
    return {"json_schema_extra": {"command_line": how}}
