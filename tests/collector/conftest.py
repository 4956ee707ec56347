import sys
from pathlib import Path

import pytest

# tests import the shared helpers of this directory as `collector_testkit`
sys.path.insert(0, str(Path(__file__).resolve().parent))
# and tests/certificates.py: appended, so that tests/agent and tests/collector shadow no package
sys.path.append(str(Path(__file__).resolve().parents[1]))

from collector_testkit import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
