import shutil
import sys
from pathlib import Path

import pytest

# tests import the shared helpers of this directory as `agent_testkit`
sys.path.insert(0, str(Path(__file__).resolve().parent))
# and tests/pki/certificates.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pki"))

from agent_testkit import FIXTURES, FakeClock


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def node_copy(tmp_path):
    """Copy a fixture tree to a temporary directory so a test can change counters."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(FIXTURES / name, target, symlinks=True)
        return target

    return copy
