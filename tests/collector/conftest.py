import sys
from pathlib import Path

import pytest

# tests import the shared helpers of this directory as `collector_testkit`
sys.path.insert(0, str(Path(__file__).resolve().parent))
# and tests/pki/certificates.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pki"))

from collector_testkit import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
