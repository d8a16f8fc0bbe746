"""Build hook: ship specs/ inside wheels as vggspec/_specs, but not in editable installs.

An editable install reads specs/ from the checkout (vggspec.bundled.specs_dir). Force-included
there, the specs made a vggspec/ folder in site-packages with no __init__.py: a namespace
package that answers `import vggspec` whenever the checkout is not on the path, and then fails
with "No module named 'vggspec.cli'".
"""

from __future__ import annotations

from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class SpecsInWheels(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "standard":
            build_data["force_include"]["specs"] = "vggspec/_specs"
