"""The harness leaves nothing behind, even when the run that started a node was killed.

A child process starts a node sandbox, leaves a daemonised process in it (as
containerd's shims are) and is killed with SIGKILL: no fixture teardown, no
atexit. What the next run finds on that slot, it removes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from node_sandbox import acquire_slot, cleanup_slot, host_hierarchies

pytestmark = pytest.mark.timeout(120)

HERE = Path(__file__).resolve().parent
CRASHING_RUN = f"""
import sys
sys.path.insert(0, {str(HERE)!r})
from node_sandbox import NodeSandbox
sandbox = NodeSandbox()
sandbox.start()
with open("/dev/null", "wb") as log:
    sandbox.run("orphan", ["sh", "-c", "setsid sleep 600 </dev/null >/dev/null 2>&1 &"], log).wait()
print(sandbox.slot.number, flush=True)
sys.stdin.read()
"""


def test_a_killed_runs_processes_cgroups_interface_and_files_are_removed():
    if os.geteuid() != 0:
        pytest.fail("the node sandbox needs root")
    run = subprocess.Popen([sys.executable, "-c", CRASHING_RUN], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    assert run.stdout is not None
    number = int(run.stdout.readline())
    run.send_signal(signal.SIGKILL)
    run.wait()
    hierarchies = host_hierarchies()
    slot, lock = acquire_slot([number])
    try:
        node_cgroups = [h.mountpoint / slot.name for h in hierarchies]
        (orphan,) = (node_cgroups[0] / "orphan" / "cgroup.procs").read_text().split()
        assert Path(f"/sys/class/net/{slot.host_interface}").exists()
        found = cleanup_slot(slot, hierarchies)
    finally:
        lock.close()
    assert any(item.startswith("processes in") for item in found), found
    assert _gone(int(orphan))
    assert not any(path.exists() for path in node_cgroups)
    assert not Path(f"/sys/class/net/{slot.host_interface}").exists()
    assert not slot.workdir.exists()


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its new parent has yet to reap."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"
