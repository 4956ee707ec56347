"""`kubecarbon demo` as a user runs it: a real subprocess, a real agent, real signals."""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from collector.demo import summary_line, this_node_name
from collector.status import StatusPoint

KUBECARBON = shutil.which("kubecarbon", path=str(Path(sys.executable).parent)) or "kubecarbon"
SUMMARY = re.compile(
    r"^\[\d\d:\d\d:\d\d\] nodes (\d+) \| utilisation ([\d.]+)% \| servers actual ([\d,.]+) vs "
    r"baseline ([\d,.]+): avoided (-?[\d,.]+) \| power ([\d,.]+) kW \| avoided CO2e (-?[\d,.]+) "
    r"kg/h \(p05-p95 (-?[\d,.]+) to (-?[\d,.]+)\)$"
)


def agent_pid(output: str) -> int:
    match = re.search(r"agent\s+pid (\d+)", output)
    assert match, output
    return int(match.group(1))


@contextlib.contextmanager
def demo_process(tmp_path: Path, *args: str):
    """A demo in its own session, output to a file; killed if the test leaves it running."""
    log = tmp_path / "demo.out"
    with log.open("w") as out:
        demo = subprocess.Popen(
            [KUBECARBON, "demo", *args, "--listen", "127.0.0.1:0"],
            stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
    try:
        yield demo, log
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()


def wait_for_output(demo: subprocess.Popen, log: Path, text: str, deadline: float,
                    poll_seconds: float, *, must_be_running: bool = True) -> None:
    while text not in log.read_text() and time.monotonic() < deadline:
        if must_be_running:
            assert demo.poll() is None, log.read_text()
        time.sleep(poll_seconds)


def assert_gone(pid: int) -> None:
    if psutil.pid_exists(pid):
        process = psutil.Process(pid)
        assert process.status() == psutil.STATUS_ZOMBIE, f"pid {pid} still running"


@pytest.mark.slow
def test_demo_runs_for_a_fixed_time_and_leaves_nothing_behind():
    done = subprocess.run(
        [KUBECARBON, "demo", "--duration", "15", "--simulate-nodes", "50", "--interval", "3",
         "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"status page\s+http://localhost:\d+/$", out, re.M)
    assert re.search(r"metrics\s+http://localhost:\d+/metrics$", out, re.M)
    lines = [SUMMARY.match(line) for line in out.splitlines()]
    summaries = [m for m in lines if m]
    assert len(summaries) >= 3, out  # 5 intervals, less a loaded machine's start-up
    for match in summaries:
        nodes, utilisation, actual, baseline, avoided, power, p50, p05, p95 = (
            float(g.replace(",", "")) for g in match.groups())
        assert nodes >= 50
        assert 0 < utilisation < 100
        assert avoided == pytest.approx(baseline - actual, abs=0.11)
        assert power > 0
        assert p05 <= p50 <= p95
    assert out.rstrip().endswith("kubecarbon demo: stopped")
    assert_gone(agent_pid(out))


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_ctrl_c_sigterm_and_sighup_stop_everything_cleanly(signum, tmp_path):
    with demo_process(tmp_path, "--simulate-nodes", "20", "--interval", "1") as (demo, log):
        wait_for_output(demo, log, "utilisation", time.monotonic() + 30, 0.2)
        children = psutil.Process(demo.pid).children(recursive=True)
        assert children, "the demo should run its agent as a child process"
        if signum == signal.SIGINT:
            os.killpg(demo.pid, signum)  # Ctrl-C in a terminal: the whole process group
        else:
            demo.send_signal(signum)
        assert demo.wait(timeout=20) == 0, log.read_text()
    output = log.read_text()
    assert "kubecarbon demo: stopped" in output
    assert "Traceback" not in output
    for child in children:
        assert_gone(child.pid)


def test_a_busy_port_is_one_clear_error(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = subprocess.run(
            [KUBECARBON, "demo", "--duration", "2", "--simulate-nodes", "0", "--no-agent",
             "--listen", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "kubecarbon demo: error:" in done.stderr and "--listen" in done.stderr


def test_bad_flags_are_refused():
    done = subprocess.run([KUBECARBON, "demo", "--simulate-nodes", "-3"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--simulate-nodes" in done.stderr and "below the minimum 0" in done.stderr
    env = {**os.environ, "KUBECARBON_INTERVAL": "0.1"}
    done = subprocess.run([KUBECARBON, "demo"], capture_output=True, text=True, timeout=60,
                          env=env)
    assert done.returncode == 2 and "--interval" in done.stderr


def test_rightsizing_line_reads_the_collectors_metrics():
    from collector.demo import rightsizing_line

    waiting = (
        'kubecarbon_workload_rightsizing_history_seconds{namespace="a",workload_kind="D",'
        'workload="w"} 30.0\n')
    assert rightsizing_line(waiting) == (
        "  rightsizing: collecting usage history (1 workloads waiting)")
    sized = waiting + (
        'kubecarbon_workload_recommended_cpu_cores{namespace="a",workload_kind="D",'
        'workload="w"} 1.5\n'
        "kubecarbon_rightsizing_avoidable_nodes 3\n"
        "kubecarbon_rightsizing_avoidable_energy_joules_per_year 7.2e9\n"
        'kubecarbon_rightsizing_avoidable_co2e_grams_per_year{quantile="0.05"} 1.0e6\n'
        'kubecarbon_rightsizing_avoidable_co2e_grams_per_year{quantile="0.5"} 2.5e6\n'
        'kubecarbon_rightsizing_avoidable_co2e_grams_per_year{quantile="0.95"} 4.0e6\n')
    assert rightsizing_line(sized) == (
        "  rightsizing: 1 workloads sized, 0 still waiting | avoidable nodes 3 | "
        "2.0 MWh/yr | 2.5 tCO2e/yr (p05-p95 1.0 to 4.0)")


def test_summary_line_and_node_name():
    point = StatusPoint(
        timestamp=0.0, nodes=301, fleet_cpu_usage_ratio=0.4321, baseline_servers=160.25,
        actual_servers=55.1, avoided_servers=105.15, power_watts=48_300.0,
        baseline_power_watts=70_000.0,
        avoided_co2e_grams_per_hour={"0.05": 20_100.0, "0.5": 39_100.0, "0.95": 60_300.0},
        energy_joules=0.0, baseline_energy_joules=0.0, co2e_grams=0.0, avoided_co2e_grams=0.0,
    )
    match = SUMMARY.match(summary_line(point))
    assert match and match.groups()[1:] == (
        "43.2", "55.1", "160.2", "105.2", "48.30", "39.1", "20.1", "60.3")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", this_node_name())
    near_zero = StatusPoint(**{**point.__dict__, "avoided_co2e_grams_per_hour": {
        "0.05": -40.0, "0.5": 900.0, "0.95": 2_700.0}})
    assert summary_line(near_zero).endswith("(p05-p95 0.0 to 2.7)")


@pytest.mark.slow
def test_the_real_agent_on_this_machine_is_counted():
    done = subprocess.run(
        [KUBECARBON, "demo", "--duration", "9", "--simulate-nodes", "0", "--interval", "2",
         "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 0, done.stderr
    nodes = [int(m.group(1)) for line in done.stdout.splitlines() if (m := SUMMARY.match(line))]
    assert nodes and nodes[-1] == 1, done.stdout + done.stderr
    assert "rejected" not in done.stderr


@pytest.mark.slow
def test_ctrl_c_while_the_agent_is_still_starting_is_clean(tmp_path):
    with demo_process(tmp_path, "--simulate-nodes", "5", "--interval", "5") as (demo, log):
        wait_for_output(demo, log, "agent        pid", time.monotonic() + 30, 0.02)
        agent = agent_pid(log.read_text())
        time.sleep(0.3)  # the agent's interpreter is up and importing, its handlers not yet
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=20) == 0, log.read_text()
    output = log.read_text()
    assert "Traceback" not in output and "kubecarbon demo: stopped" in output
    assert_gone(agent)


@pytest.mark.slow
def test_an_agent_that_dies_is_reported_and_the_demo_goes_on(tmp_path):
    with demo_process(tmp_path, "--simulate-nodes", "5", "--interval", "1") as (demo, log):
        deadline = time.monotonic() + 30
        wait_for_output(demo, log, "utilisation", deadline, 0.1, must_be_running=False)
        os.kill(agent_pid(log.read_text()), signal.SIGKILL)
        wait_for_output(demo, log, "agent        exited", deadline, 0.1)
        assert "exited with status -9" in log.read_text()
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=20) == 0, log.read_text()
