"""Copy the shape and counters of a real node's kubepods cgroups into an agent fixture.

    python tests/capture_kubepods.py OUT --pod REAL_UID=FIXTURE_UID [--pod ...]
        [--cgroup-root /sys/fs/cgroup] [--parent kubecarbon-node-0] [--hierarchy cpuacct ...]

For each cgroup v1 hierarchy named (default: cpu and cpuacct) that holds
`<parent>/kubepods` under --cgroup-root, the kubepods directory, its QoS
directories and the chosen pods' directories (their container cgroups, the
sandbox's included) are recreated under OUT/sys/fs/cgroup/<hierarchy>/kubepods,
with the interface files the agent's sources and the tests read copied byte for
byte. --parent is the cgroup the node's kubepods sits in on this host (the
cluster suite's node sandbox; empty on an ordinary node). A pod's uid is renamed
to its FIXTURE_UID in directory names (the tests know pods by those uids);
container ids and every counter stay as the kernel wrote them. The empty cgroup
v2 a hybrid host mounts at `unified/` is recorded too. OUT/sys/fs/cgroup is
replaced; the rest of OUT (the fixture's /proc) is left as it is.

The cgroup v1 fixture `tests/fixtures/agent/v1-cgroupfs-containerd` was made this
way from the suite's real node (kubelet 1.20, containerd 1.6, runc 1.1, cgroupfs driver).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

# What the agent reads and what its tests look at; the rest of the ~30 interface
# files per cgroup would only bloat the fixture.
KEPT_FILES = (
    "cgroup.procs", "tasks", "cpuacct.usage", "cpuacct.stat", "cpuacct.usage_percpu",
    "cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.stat",
)
QOS_DIRS = ("burstable", "besteffort")


def _copy_files(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in KEPT_FILES:
        path = source / name
        if path.is_file():
            (target / name).write_bytes(path.read_bytes())


def _copy_pod(source: Path, target: Path) -> None:
    _copy_files(source, target)
    for child in sorted(source.iterdir()):
        if child.is_dir():
            _copy_files(child, target / child.name)


def _pod_dir_name(uid: str) -> str:
    return f"pod{uid}"


def capture(out: Path, renames: dict[str, str], cgroup_root: Path, parent: str,
            hierarchies: list[str]) -> list[str]:
    """Write the fixture; returns the directories of the pods it copied."""
    cgroups = out / "sys" / "fs" / "cgroup"
    if cgroups.exists():
        shutil.rmtree(cgroups)
    copied = []
    for name in hierarchies:
        kubepods = cgroup_root / name / parent / "kubepods"
        if not kubepods.is_dir():
            continue
        target = cgroups / name / "kubepods"
        _copy_files(kubepods, target)
        for qos in ("", *QOS_DIRS):
            source_dir = kubepods / qos if qos else kubepods
            target_dir = target / qos if qos else target
            if qos:
                _copy_files(source_dir, target_dir)
            for real_uid, fixture_uid in renames.items():
                pod = source_dir / _pod_dir_name(real_uid)
                if pod.is_dir():
                    _copy_pod(pod, target_dir / _pod_dir_name(fixture_uid))
                    copied.append(f"{name}/{pod.relative_to(kubepods)}")
    if not copied:
        raise SystemExit(f"none of the pods {sorted(renames)} is under {cgroup_root}/*/{parent}")
    unified = cgroup_root / "unified"
    if (unified / "cgroup.controllers").is_file():
        (cgroups / "unified").mkdir(parents=True, exist_ok=True)
        (cgroups / "unified" / "cgroup.controllers").write_bytes(
            (unified / "cgroup.controllers").read_bytes())
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--pod", action="append", required=True, metavar="REAL_UID=FIXTURE_UID")
    parser.add_argument("--cgroup-root", type=Path, default=Path("/sys/fs/cgroup"))
    parser.add_argument("--parent", default="", help="cgroup holding kubepods (default: root)")
    parser.add_argument("--hierarchy", action="append", dest="hierarchies",
                        help="v1 hierarchy to copy (default: cpu and cpuacct)")
    args = parser.parse_args(argv)
    renames = dict(pair.split("=", 1) for pair in args.pod)
    hierarchies = args.hierarchies or ["cpu", "cpuacct"]
    for line in capture(args.out, renames, args.cgroup_root, args.parent, hierarchies):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
