"""Whether an operating-system process, or a process group, still exists.

Signal 0 asks without signalling: no such process means gone, one of another user's means there.
A zombie (exited, not yet reaped by its parent) still exists.
"""

from __future__ import annotations

import os


def process_exists(pid: int, *, group: bool = False) -> bool:
    """Whether process ``pid`` exists, or with ``group``, any process of the group ``pid`` leads."""
    try:
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
