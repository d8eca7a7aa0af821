"""The mutation fuzzer (tests/fuzz.py) in the default run: a fixed seed and budget, and
every regression it ever found (data/fuzz-regressions), also through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import fuzz
from conftest import DEFAULT_CAPS, GOLDEN_STATE_ROOT

#: The default run: the same cases every time, about 15 s on two shared cores.
SEED = 20261127
CASES = 1500
REGRESSIONS = sorted(fuzz.REGRESSIONS.glob("*.xml"))


def test_fuzz_fixed_budget(record_property):
    figures = fuzz.campaign(SEED, CASES)
    print(figures.line())
    record_property("fuzz", figures.line())
    tracebacks = [f"{name}:\n{text}" for name, _data, text in figures.tracebacks]
    assert not tracebacks, "\n".join(tracebacks[:3])
    assert not figures.hangs, [name for name, _data in figures.hangs]
    assert figures.cases == CASES == figures.errors + figures.successes
    assert figures.successes > 0 and figures.errors > 0  # the mutations reach both ends
    assert figures.mutations == {m.__name__.lstrip("_") for m in fuzz.MUTATIONS}


def test_cases_are_reproducible():
    first = [data for _name, data in fuzz.generate(SEED, 30)]
    assert first == [data for _name, data in fuzz.generate(SEED, 30)]


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_regression(path):
    outcome, text = fuzz.run_bounded(path.read_bytes(), path.name)
    assert outcome in ("ok", "error"), text


def test_regressions_through_the_cli(tmp_path):
    """The real commands: exit 0 or 1, one line on stderr, never a traceback."""
    env = {**os.environ, "QEMUWRAP_CACHE_DIR": str(tmp_path / "cache")}
    for path in REGRESSIONS:
        for command in ("dry-run", "validate"):
            res = subprocess.run([sys.executable, "-m", "qemuwrap", command, str(path),
                                  "--caps", str(DEFAULT_CAPS), "--state-dir",
                                  GOLDEN_STATE_ROOT, "--no-host-check"],
                                 capture_output=True, text=True, timeout=60, env=env)
            where = f"{command} {path.name}"
            assert res.returncode in (0, 1), f"{where}: {res.stderr}"
            assert "Traceback" not in res.stderr, f"{where}: {res.stderr}"
            if res.returncode:  # one line per problem, each naming the file
                lines = res.stderr.splitlines()
                assert lines and all(ln.startswith(f"qemuwrap: {path}: ") and ln.isprintable()
                                     for ln in lines), f"{where}: {res.stderr!r}"
