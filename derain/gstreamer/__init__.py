"""derain inside any GStreamer pipeline: the `derain` element (plugins/python/gstderain.py, loaded by
GStreamer's Python plugin loader) and what that loader needs to find it and this environment's
packages (`derain gstreamer --env`)."""

from __future__ import annotations

import importlib.util
import shlex
import sys
import sysconfig
from pathlib import Path

# GST_PLUGIN_PATH names the folder *above* python/: the loader imports every python/*.py in it.
PLUGIN_FOLDER = Path(__file__).parent / "plugins"


def environment() -> dict[str, str]:
    """The variables that make `gst-inspect-1.0 derain` work from this environment: the plugin
    folder, and on the loader's PYTHONPATH derain itself, this Python's packages, then the
    system's PyGObject. The loader embeds the system's Python, which does not read an editable
    install's .pth hook, and inside an activated venv it takes the venv's sys.path, where the
    system's `gi` is missing unless the venv was made with --system-site-packages."""
    package_parent = str(Path(__file__).resolve().parents[2])
    folders = [package_parent, sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], _pygobject_folder()]
    return {"GST_PLUGIN_PATH": str(PLUGIN_FOLDER.resolve()),
            "PYTHONPATH": ":".join(dict.fromkeys(folder for folder in folders if folder))}


def _pygobject_folder() -> str | None:
    """Where `gi` is: importable here, else the system's packages (Debian/Ubuntu, then others)."""
    spec = importlib.util.find_spec("gi")
    if spec is not None and spec.origin:
        return str(Path(spec.origin).parents[1])
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for folder in (Path("/usr/lib/python3/dist-packages"), Path(f"/usr/lib/{version}/site-packages"),
                   Path(f"/usr/lib64/{version}/site-packages")):
        if (folder / "gi").is_dir():
            return str(folder)
    return None


def shell_lines() -> str:
    """`export` lines for `eval "$(derain gstreamer --env)"`, keeping what the variables held."""
    return "\n".join(f'export {name}={shlex.quote(value)}"${{{name}:+:${name}}}"' for name, value in environment().items())
