"""Whether a mounted file changed: what the kubelet's Secret and ConfigMap updates change.

The kubelet replaces a Secret volume's files by swapping a symlink (new inodes), and
other writers rewrite a file in place (same inode, new size or modification time).
Comparing device, inode, size and modification time of the file the path leads to
(symlinks followed) notices both, for the price of one stat.
"""

from __future__ import annotations

import os
from pathlib import Path

FileIdentity = tuple[int, int, int, int]


def file_identity(path: Path) -> FileIdentity:
    """Device, inode, size and modification time (ns) of what `path` leads to; OSError if none."""
    status = os.stat(path)
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns
