import sys
from pathlib import Path

# The end-to-end test drives the real agent on the agent tests' fixture node and clock.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
# tests/pki/certificates.py's SecretVolume updates files as the kubelet does
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pki"))
