"""Per-guest NVRAM: where it lives (root and user), made from the template once (owner-only,
never half written), kept across starts, copied for a clone, and one-line refusals."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from qemuwrap.companions import nvram
from qemuwrap.companions.nvram import NvramError


def test_default_paths():
    assert nvram.default_path("win11", privileged=True) == "/var/lib/qemuwrap/nvram/win11_VARS.fd"
    env = {"XDG_DATA_HOME": "/home/u/data", "HOME": "/home/u"}
    assert nvram.default_path("g", privileged=False, environ=env) == \
        "/home/u/data/qemuwrap/nvram/g_VARS.fd"
    assert nvram.default_path("g", privileged=False, environ={"HOME": "/home/u"}) == \
        "/home/u/.local/share/qemuwrap/nvram/g_VARS.fd"
    assert nvram.default_path("g", "qcow2", privileged=True).endswith("/g_VARS.qcow2")


@pytest.fixture
def template(tmp_path) -> Path:
    path = tmp_path / "OVMF_VARS.fd"
    path.write_bytes(os.urandom(64 << 10))
    return path


def test_first_start_copies_then_keeps(tmp_path, template):
    path = tmp_path / "nvram" / "g_VARS.fd"
    companion = nvram.Nvram(str(path), str(template))
    companion.prepare()
    assert companion.created
    assert path.read_bytes() == template.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # The guest writes its variables; the next start keeps them (and a changed template).
    path.write_bytes(b"guest variables")
    template.write_bytes(b"a newer template")
    again = nvram.Nvram(str(path), str(template))
    again.prepare()
    assert not again.created and path.read_bytes() == b"guest variables"
    assert sorted(p.name for p in path.parent.iterdir()) == ["g_VARS.fd"]  # no temp files


def test_concurrent_first_starts_leave_one_whole_file(tmp_path, template):
    path = tmp_path / "g_VARS.fd"
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(
        nvram.ensure(str(path), str(template)))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert path.read_bytes() == template.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["OVMF_VARS.fd", "g_VARS.fd"]


def test_refusals_are_one_line(tmp_path, template):
    with pytest.raises(NvramError, match="no template is known") as info:
        nvram.ensure(str(tmp_path / "x_VARS.fd"), None)
    assert str(info.value).startswith("nvram: ") and "\n" not in str(info.value)
    with pytest.raises(NvramError, match="No such file or directory"):
        nvram.ensure(str(tmp_path / "y_VARS.fd"), str(tmp_path / "missing.fd"))
    assert not (tmp_path / "y_VARS.fd").exists()
    (tmp_path / "dir_VARS.fd").mkdir()
    with pytest.raises(NvramError, match="not a regular file"):
        nvram.ensure(str(tmp_path / "dir_VARS.fd"), str(template))


def test_clone_copies_and_never_overwrites(tmp_path, template):
    src = tmp_path / "a_VARS.fd"
    nvram.ensure(str(src), str(template))
    src.write_bytes(b"a's variables")
    dst = tmp_path / "b_VARS.fd"
    nvram.clone(str(src), str(dst))
    assert dst.read_bytes() == b"a's variables"
    assert stat.S_IMODE(dst.stat().st_mode) == 0o600
    with pytest.raises(NvramError, match="already exists"):
        nvram.clone(str(src), str(dst))
