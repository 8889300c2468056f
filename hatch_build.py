"""Build hook: compile the request meter (src/asgiscale/runtime/_meter.c) into the wheel.

The extension is optional. Without a C compiler or Python's headers, or with
ASGISCALE_NO_EXTENSIONS set, the build goes on with a warning and asgiscale runs the
pure-Python meter, which counts the same at a higher cost per request (docs/metrics.md).
The compiler and flags are those Python itself was built with (sysconfig), so no build
dependency is needed beyond hatchling.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("src/asgiscale/runtime/_meter.c")


def compile_extension(root: Path) -> Path:
    """Compile the meter next to its source (where an editable install imports it from)."""
    source = root / SOURCE
    target = source.with_name("_meter" + sysconfig.get_config_var("EXT_SUFFIX"))
    command = [
        *shlex.split(sysconfig.get_config_var("LDSHARED")),
        *shlex.split(sysconfig.get_config_var("CCSHARED") or ""),
        "-O2",
        "-Wall",
        f"-I{sysconfig.get_paths()['include']}",
        str(source),
        "-o",
        str(target),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{result.stderr.strip()}")
    return target


class MeterBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("ASGISCALE_NO_EXTENSIONS"):
            return
        try:
            target = compile_extension(Path(self.root))
        except (OSError, RuntimeError) as exc:
            self.app.display_warning(
                f"asgiscale: the compiled request meter was not built, the pure-Python one will run ({exc})"
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # an editable install imports it from src/ where it was built
            build_data["force_include"][str(target)] = f"asgiscale/runtime/{target.name}"
