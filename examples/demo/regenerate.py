"""Rebuild the demo's channel and pixi.lock (run from the repository root: ``python examples/demo/regenerate.py``).

The packages are real conda packages made with the test suite's builders, so the demo needs no network:
``hello-pixi-pack`` (noarch generic) has a script that prints the prefix it was installed to (a text
placeholder), an activation script and an environment variable; it depends on ``pixi-pack-demo-data``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests"))

from builders import build_package, text_prefix, write_channel  # noqa: E402
from lockfiles import conda_at, write_lock  # noqa: E402

PLATFORMS = ("linux-64", "linux-aarch64", "osx-64", "osx-arm64")


def main() -> None:
    build = HERE / "build"
    data = build_package(
        build,
        "pixi-pack-demo-data",
        "1.0",
        "0",
        noarch="generic",
        fmt="tar.bz2",
        files={"share/pixi-pack-demo/greeting.txt": "Hello from an environment packed by pixi-pack!\n"},
    )
    hello = build_package(
        build,
        "hello-pixi-pack",
        "0.1.0",
        "0",
        noarch="generic",
        depends=["pixi-pack-demo-data >=1"],
        files={
            "bin/hello-pixi-pack": text_prefix(
                '#!/bin/sh\ncat "@PREFIX@/share/pixi-pack-demo/greeting.txt"\n'
                'echo "installed in: @PREFIX@"\necho "DEMO_GREETING=$DEMO_GREETING"\n',
                mode=0o755,
            ),
            "etc/conda/activate.d/hello-pixi-pack.sh": 'export DEMO_ACTIVATED="yes"\n',
            "etc/conda/env_vars.d/hello-pixi-pack.json": '{"DEMO_GREETING": "hi"}\n',
        },
    )
    channel = HERE / "channel"
    shutil.rmtree(channel, ignore_errors=True)
    write_channel(channel, [data, hello])
    shutil.rmtree(build)
    entries = [conda_at(p, f"./channel/noarch/{p.file_name}", explicit=True) for p in (data, hello)]
    write_lock(HERE / "pixi.lock", {"default": {p: entries for p in PLATFORMS}}, ["./channel"], version=6)


if __name__ == "__main__":
    main()
