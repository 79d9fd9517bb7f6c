"""Entry point scripts, and ``Scripts\\<name>.exe`` launchers for them in Windows environments.

A launcher is pypa/installer's simple launcher (Vinay Sajip's ``simple_launcher``, the same one pip and
distlib write), then a shebang line naming the environment's interpreter, then a zip archive whose
``__main__.py`` calls the entry point. Run, the launcher reads the shebang from its own end and starts
``<interpreter> <the .exe> <args>``; Python runs the zip appended to the ``.exe``. rattler and conda put
their own launcher there instead, which runs ``<name>-script.py`` beside it; that script is written too.

The zip's timestamp is fixed, so the same entry point gives the same bytes on every install.
"""

from __future__ import annotations

import io
import zipfile
from functools import cache
from importlib import resources

from pixi_pack.errors import InstallError
from pixi_pack.formats.package_info import EntryPoint

_LAUNCHERS = {
    "win-64": ("t64.exe", "w64.exe"),
    "win-arm64": ("t64-arm.exe", "w64-arm.exe"),
    "win-32": ("t32.exe", "w32.exe"),
}
"""installer's launcher files per platform: (console, gui)."""
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def entry_point_script(point: EntryPoint, shebang: str) -> str:
    """The script rattler writes for an entry point (``python_entry_point_template``); Windows gets no
    shebang, and the same code is a launcher's ``__main__.py``."""
    import_name = point.function.split(".", 1)[0]
    return (
        f"{shebang}\n"
        "# -*- coding: utf-8 -*-\n"
        "import re\n"
        "import sys\n\n"
        f"from {point.module} import {import_name}\n\n"
        "if __name__ == '__main__':\n"
        "\tsys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n"
        f"\tsys.exit({point.function}())\n"
    )


def has_launchers(platform: str) -> bool:
    """Whether entry points of ``platform`` environments get a ``.exe`` launcher."""
    return platform in _LAUNCHERS


def windows_interpreter(prefix: str, *, gui: bool) -> str:
    """The interpreter at ``prefix`` that a launcher starts: ``python.exe``, ``pythonw.exe`` for gui scripts.

    The prefix's own separator joins them, so a prefix given as ``C:\\env`` gives ``C:\\env\\python.exe``.
    """
    separator = "/" if "/" in prefix and "\\" not in prefix else "\\"
    return prefix.rstrip("/\\") + separator + ("pythonw.exe" if gui else "python.exe")


def launcher_exe(platform: str, interpreter: str, main: str, *, gui: bool) -> bytes:
    """The ``.exe`` that runs the Python code ``main`` with ``interpreter``, for a ``platform`` environment."""
    if '"' in interpreter or "\n" in interpreter or "\r" in interpreter:
        msg = f"cannot write a launcher for the interpreter {interpreter!r}: its path holds a quote or a line break"
        raise InstallError(msg)
    shebang = f'#!"{interpreter}"\n' if " " in interpreter else f"#!{interpreter}\n"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(zipfile.ZipInfo("__main__.py", _ZIP_TIME), main.encode("utf-8"))
    return _launcher(platform, gui) + shebang.encode("utf-8") + archive.getvalue()


@cache
def _launcher(platform: str, gui: bool) -> bytes:
    name = _LAUNCHERS[platform][gui]
    try:
        return (resources.files("installer") / "_scripts" / name).read_bytes()
    except OSError as exc:
        msg = f"cannot read the launcher {name} of the installer package: {exc}; reinstall pixi-pack"
        raise InstallError(msg) from exc
