"""kubecarbon node agent: samples the host and delivers one report per window."""

# Kept here rather than read through importlib.metadata, which costs the agent
# 2 MB of resident memory; tests/agent/test_runtime.py checks it against the
# installed distribution's version.
__version__ = "0.1.0"
