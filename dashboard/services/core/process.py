"""This process, as leases and job runs name it."""
from __future__ import annotations

import os
import socket


def worker_name() -> str:
    """host:pid of this process, used for leases and job runs."""
    return f"{socket.gethostname()}:{os.getpid()}"
