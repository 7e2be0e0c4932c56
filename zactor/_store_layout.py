"""The layout of the shared-memory arena's regions and its read/write locks: what writers,
readers (zactor._object_store) and the node's store (zactor.node.store) agree on."""

from __future__ import annotations

import errno
import fcntl
import os
import struct

PAGE = 4096
#: Bytes before an object's layout in its region: the seal, then padding to keep alignment.
HEADER = 64
#: The seal: random bytes per allocation at the start of a region, written last.
SEAL_LEN = 16

_FLOCK = struct.Struct("hhqqi4x")  # struct flock on Linux (l_pid must be 0 for OFD locks)


def page_round(n: int) -> int:
    return (n + PAGE - 1) // PAGE * PAGE


def region_length(size: int) -> int:
    """The span in the arena of an object whose layout is ``size`` bytes."""
    return page_round(HEADER + size)


def lock_region(fd: int, kind: int, offset: int, length: int, wait: bool) -> bool:
    """Take (``F_RDLCK``, ``F_WRLCK``) or drop (``F_UNLCK``) an OFD lock on
    ``[offset, offset + length)`` of ``fd``. OFD locks belong to the open file description,
    so they last while any duplicate of the descriptor (a mapping's) is open. False if
    ``wait`` is off and another description holds a conflicting lock."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK,
                    _FLOCK.pack(kind, os.SEEK_SET, offset, length, 0))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True
