"""The lockfile is read with libyaml's safe loader where PyYAML has it; it reads what the pure-Python
loader reads, and a broken lockfile still says where it breaks."""

from __future__ import annotations

import pytest
import yaml
from conftest import realdata_path

from pixi_pack.errors import LockfileError
from pixi_pack.lock import lockfile


@pytest.fixture(params=["libyaml", "python"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "libyaml":
        if not hasattr(yaml, "CSafeLoader"):
            pytest.skip("PyYAML was built without libyaml")
        assert lockfile._SafeLoader is yaml.CSafeLoader
    else:
        monkeypatch.setattr(lockfile, "_SafeLoader", yaml.SafeLoader)
    return str(request.param)


def test_a_real_lockfile_reads_the_same(loader: str) -> None:
    path = realdata_path("locks", "pixipack-local-build.v7.lock")
    text = path.read_text(encoding="utf-8")
    assert lockfile.parse_lockfile(text) == yaml.safe_load(text)


def test_a_broken_lockfile_says_where(loader: str) -> None:
    with pytest.raises(LockfileError, match=r"could not parse pixi.lock: .* at line 3, column 1"):
        lockfile.parse_lockfile("version: 6\nenvironments: {default: [\n")
