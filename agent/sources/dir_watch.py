"""Which directories gained, lost or renamed an entry since the last look (inotify).

A directory's mtime cannot tell: cgroupfs (kernfs) stores times only for nodes
whose attributes someone set, so creating or removing a cgroup leaves its
parent's mtime where it was (checked on Linux 6.18, cgroup v1). The kernel does
send inotify events for a cgroup's mkdir, rmdir and rename, from whatever mount
namespace they come, as for any directory; kubelet's cAdvisor finds new
containers the same way. The agent asks without blocking, once per cycle: one
`read` that fails with EAGAIN when nothing changed, whatever the number of pods.

Counters rewritten in place are not events here (no IN_MODIFY in the mask), so
the pods' own activity never wakes anything. A removed cgroup's own watch hears
nothing (kernfs keeps the directory's link count, so there is no IN_DELETE_SELF)
while its parent hears IN_DELETE: owners learn of removals from the parent, and
remove the watch themselves. A directory this class could not watch (no
inotify, or `max_watches` reached) has no watch id, and its owner lists it
every cycle.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass

log = logging.getLogger("agent.sources")

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

ENTRY_EVENTS = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF
_EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, length of the name that follows
READ_BYTES = 65536
# Watches count against the host's per-user limit (fs.inotify.max_user_watches,
# 8,192 on kernels before 5.11), which systemd and the kubelet share; one per pod
# and three more is plenty for the 110 pods kubelet allows by default.
DEFAULT_MAX_WATCHES = 4096


_ENDED = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED


@dataclass(frozen=True)
class Changes:
    entries: frozenset[int] = frozenset()  # watches whose directory gained or lost an entry
    ended: frozenset[int] = frozenset()  # watches whose directory was removed or moved
    overflowed: bool = False  # the kernel dropped events: anything may have changed


NO_CHANGES = Changes()


def parse_events(data: bytes) -> Changes:
    """What a buffer of `struct inotify_event` records says, by watch id."""
    entries: set[int] = set()
    ended: set[int] = set()
    overflowed = False
    offset = 0
    while offset + _EVENT_HEADER.size <= len(data):
        watch, mask, _cookie, name_length = _EVENT_HEADER.unpack_from(data, offset)
        if mask & IN_Q_OVERFLOW:
            overflowed = True
        elif mask & _ENDED:
            ended.add(watch)
        else:
            entries.add(watch)
        offset += _EVENT_HEADER.size + name_length
    return Changes(frozenset(entries), frozenset(ended), overflowed)


class DirectoryWatch:
    """An inotify instance, read without blocking; degrades to watching nothing."""

    def __init__(self, max_watches: int = DEFAULT_MAX_WATCHES) -> None:
        self.max_watches = max_watches
        self._watches = 0
        self._descriptor: int | None = None
        self._add_watch = self._rm_watch = None
        try:
            import ctypes  # only here: the agent needs no C library for anything else

            libc = ctypes.CDLL(None, use_errno=True)
            init, self._add_watch, self._rm_watch = (
                libc.inotify_init1, libc.inotify_add_watch, libc.inotify_rm_watch
            )  # fmt: skip
            self._add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
            descriptor = init(IN_NONBLOCK | IN_CLOEXEC)
            if descriptor < 0:
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            self._descriptor = descriptor
        except (ImportError, OSError, AttributeError) as exc:  # no ctypes, no inotify in libc
            log.warning("no inotify (%s): the pod cgroups are listed every cycle", exc)

    @property
    def available(self) -> bool:
        return self._descriptor is not None

    def add(self, path: str) -> int | None:
        """Watch a directory; its id, or None if it cannot be watched (list it every time)."""
        if self._descriptor is None or self._add_watch is None:
            return None
        if self._watches >= self.max_watches:
            return None
        watch = self._add_watch(self._descriptor, os.fsencode(path), ENTRY_EVENTS | IN_ONLYDIR)
        if watch < 0:
            return None  # ENOENT: gone already; ENOSPC: the host's limit; either way, poll
        self._watches += 1
        return int(watch)

    def remove(self, watch: int) -> None:
        """Stop watching; harmless if the kernel already dropped the watch (directory removed)."""
        if self._descriptor is not None and self._rm_watch is not None:
            self._rm_watch(self._descriptor, watch)
            self._watches -= 1

    def changes(self) -> Changes:
        """Everything that happened since the last call; NO_CHANGES costs one failed read."""
        if self._descriptor is None:
            return NO_CHANGES
        chunks = []
        while True:
            try:
                chunk = os.read(self._descriptor, READ_BYTES)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return parse_events(b"".join(chunks)) if chunks else NO_CHANGES

    def close(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
            self._watches = 0

    def __del__(self) -> None:
        self.close()
