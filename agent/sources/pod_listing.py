"""The node's pod cgroups and their container cgroups, listed again only where something changed.

One `refresh()` per cycle serves both pod sources: `pod_cpu` reads the counter
of each pod it returns, `density` takes the container counts kept beside them.
The first refresh lists the whole tree: the kubepods cgroup, its QoS cgroups and
every pod cgroup. Later ones ask the directory watch which directories gained,
lost or renamed an entry and list only those, so a cycle in which no pod or
container came or went costs one failed read, however many pods run; a
directory that could not be watched is listed every cycle instead. Every
directory is watched before it is listed, so an entry created in between is
seen by the listing or reported by the watch, never missed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from agent.sources import SourceError
from agent.sources.dir_watch import Changes, DirectoryWatch
from agent.sources.kubepods import (
    KubepodsLocation,
    PodCgroup,
    classify_entry,
    count_container_names,
    find_kubepods,
)


@dataclass(eq=False, slots=True)
class _Group:
    """The kubepods cgroup ("guaranteed": its pods are guaranteed) or one QoS cgroup in it."""

    path: str
    qos_class: str
    watch: int | None
    pods: set[str] = field(default_factory=set)  # paths of the pod cgroups in it
    groups: set[str] = field(default_factory=set)  # paths of its QoS cgroups (kubepods only)
    inode: int | None = None  # kubepods only: to tell it from one made again at its path


@dataclass(eq=False, slots=True)
class _Pod:
    cgroup: PodCgroup
    group: _Group
    watch: int | None
    container_cgroups: int  # the sandbox's included


_Item = TypeVar("_Item", _Group, _Pod)


class PodListing:
    """The node's pod cgroups, refreshed once per cycle for the sources that share it.

    `pod_cpu` refreshes; `density`, which the sampler reads right after, takes
    that refresh when it is at most `reuse_seconds` old.
    """

    def __init__(
        self,
        cgroup_root: Path,
        reuse_seconds: float = 0.5,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        watch: DirectoryWatch | None = None,
        list_directory: Callable[[str], list[str]] = os.listdir,
    ) -> None:
        self.cgroup_root = cgroup_root
        self.reuse_seconds = reuse_seconds
        self.monotonic = monotonic
        self.watch = watch if watch is not None else DirectoryWatch()
        self.list_directory = list_directory
        # moves whenever a pod came or went or a pod's container cgroups changed
        self.generation = 0
        self._location: KubepodsLocation | None = None
        self._root: _Group | None = None
        self._groups: dict[str, _Group] = {}
        self._pods: dict[str, _Pod] = {}
        self._watched: dict[int, _Group | _Pod] = {}
        self._unwatched_groups: dict[str, _Group] = {}  # listed every cycle
        self._unwatched_pods: dict[str, _Pod] = {}
        self._pod_cgroups: list[PodCgroup] | None = None  # built again after a change
        self._latest: tuple[float, KubepodsLocation, list[PodCgroup]] | None = None

    def refresh(self) -> tuple[KubepodsLocation, list[PodCgroup]]:
        """Where the pods are and which pods exist now (a new list: the caller may keep it)."""
        self._latest = None
        try:
            location = self._update(self.watch.changes())
        except SourceError:
            self._forget()  # a half-applied change must not stand: list everything next time
            raise
        if self._pod_cgroups is None:
            self._pod_cgroups = [pod.cgroup for pod in self._pods.values()]
        pods = list(self._pod_cgroups)
        self._latest = (self.monotonic(), location, pods)
        return location, pods

    def recent(self) -> tuple[KubepodsLocation, list[PodCgroup]]:
        if self._latest is not None:
            taken, location, pods = self._latest
            if self.monotonic() - taken <= self.reuse_seconds:
                return location, pods
        return self.refresh()

    def container_cgroups(self) -> dict[str, int]:
        """Container cgroups (the sandbox's included) per pod uid, as of the last refresh."""
        return {pod.cgroup.uid: pod.container_cgroups for pod in self._pods.values()}

    def _update(self, changes: Changes) -> KubepodsLocation:
        root = self._root
        # events lost, kubepods moved, or removed and made again: no parent watch tells of
        # that (and kernfs does not tell a directory's own watch), but its inode changes
        moved = root is not None and (
            root.watch in changes.ended or self._inode(root.path) != root.inode
        )
        if root is not None and (changes.overflowed or moved):
            self._forget()
            root = None
        if root is None or self._location is None:
            location = find_kubepods(self.cgroup_root)
            path = str(location.path)
            inode = self._inode(path)
            self._root = self._add_group(path, "guaranteed")
            self._root.inode = inode
            self._location = location
            return location
        stale_groups: dict[str, _Group] = dict(self._unwatched_groups)
        stale_pods: dict[str, _Pod] = dict(self._unwatched_pods)
        for watch in changes.ended:  # removed or renamed: the parent's listing says what is left
            gone = self._watched.get(watch)
            if isinstance(gone, _Pod):
                stale_groups[gone.group.path] = gone.group
                self._drop_pod(gone)
            elif gone is not None:
                stale_groups[root.path] = root
                self._drop_group(gone)
        for watch in changes.entries:
            changed = self._watched.get(watch)
            if isinstance(changed, _Pod):
                stale_pods[changed.cgroup.path] = changed
            elif changed is not None:
                stale_groups[changed.path] = changed
        for group in stale_groups.values():
            if self._groups.get(group.path) is group:
                self._list_group(group)
        for pod in stale_pods.values():
            if self._pods.get(pod.cgroup.path) is pod:
                self._recount(pod)
        return self._location

    @staticmethod
    def _inode(path: str) -> int | None:
        try:
            return os.stat(path).st_ino
        except OSError:
            return None

    def _list(self, path: str) -> list[str] | None:
        """A directory's entries; None if it is gone."""
        try:
            return self.list_directory(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SourceError(f"cannot list {path}: {exc.strerror or exc}") from exc

    def _add_group(self, path: str, qos_class: str) -> _Group:
        group = _Group(path, qos_class, self.watch.add(path))
        self._register(group, self._unwatched_groups, path)
        self._groups[path] = group
        self._list_group(group)
        return group

    def _list_group(self, group: _Group) -> None:
        names = self._list(group.path)
        if names is None:
            if group.qos_class == "guaranteed":  # kubepods itself
                raise SourceError(f"cannot list {group.path}: it is gone")
            names = []  # removed since its parent was listed; its own event drops it
        pods: dict[str, PodCgroup | None] = {}  # None: known already
        groups: dict[str, str | None] = {}
        for name in names:
            path = f"{group.path}/{name}"
            if path in group.pods:
                pods[path] = None
            elif path in group.groups:
                groups[path] = None
            else:  # parsed only when new, so the parses need no cache
                entry = classify_entry(group.path, name, group.qos_class)
                if isinstance(entry, str):
                    groups[path] = entry
                elif entry is not None:
                    pods[path] = entry
        # what went first: a directory renamed in the same cycle keeps its inode, and so
        # its watch id, which the new name must not lose to the old one's removal
        for path in group.pods - pods.keys():
            self._drop_pod(self._pods[path])
        for path in group.groups - groups.keys():
            self._drop_group(self._groups[path])
        for cgroup in pods.values():
            if cgroup is not None:
                self._add_pod(cgroup, group)
        for path, qos_class in groups.items():
            if qos_class is not None:
                group.groups.add(path)
                self._add_group(path, qos_class)

    def _add_pod(self, cgroup: PodCgroup, group: _Group) -> None:
        watch = self.watch.add(cgroup.path)
        names = self._list(cgroup.path)
        if names is None:  # deleted since the parent was listed
            if watch is not None:
                self.watch.remove(watch)
            return
        pod = _Pod(cgroup, group, watch, count_container_names(names))
        self._register(pod, self._unwatched_pods, cgroup.path)
        self._pods[cgroup.path] = pod
        group.pods.add(cgroup.path)
        self._changed()

    def _recount(self, pod: _Pod) -> None:
        names = self._list(pod.cgroup.path)
        if names is None:  # deleted: gone from this refresh already, the parent's event follows
            self._drop_pod(pod)
            return
        count = count_container_names(names)
        if count != pod.container_cgroups:
            pod.container_cgroups = count
            self._changed()

    def _register(self, item: _Item, unwatched: dict[str, _Item], path: str) -> None:
        if item.watch is None:
            unwatched[path] = item
        else:
            self._watched[item.watch] = item

    def _unregister(self, item: _Item, unwatched: dict[str, _Item], path: str) -> None:
        if item.watch is None:
            unwatched.pop(path, None)
        else:
            self._watched.pop(item.watch, None)
            self.watch.remove(item.watch)

    def _drop_pod(self, pod: _Pod) -> None:
        path = pod.cgroup.path
        self._unregister(pod, self._unwatched_pods, path)
        del self._pods[path]
        pod.group.pods.discard(path)
        self._changed()

    def _drop_group(self, group: _Group) -> None:
        for path in list(group.pods):
            self._drop_pod(self._pods[path])
        for path in list(group.groups):
            self._drop_group(self._groups[path])
        self._unregister(group, self._unwatched_groups, group.path)
        del self._groups[group.path]
        if self._root is not None:
            self._root.groups.discard(group.path)

    def _changed(self) -> None:
        self._pod_cgroups = None
        self.generation += 1

    def _forget(self) -> None:
        """Drop everything, watches included; the next refresh lists the whole tree."""
        for watch in self._watched:
            self.watch.remove(watch)
        for table in (self._watched, self._groups, self._pods):
            table.clear()
        self._unwatched_groups.clear()
        self._unwatched_pods.clear()
        self._root = None
        self._location = None
        self._changed()
