"""A private PostgreSQL cluster for tests that stop or freeze the database.

The shared server on 127.0.0.1:5432 serves other engineers and CI: it is never stopped or
frozen. Tests of an outage start a cluster of their own instead (initdb as the `postgres` OS
user into a temporary folder, a free port, its unix socket in that folder), point an app at
it, stop it (`pg_ctl stop -m immediate`) or freeze it (SIGSTOP on the postmaster and its
children), and always remove it afterwards.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .conftest import free_port


def binaries() -> Path | None:
    """The newest PostgreSQL server binaries installed, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def unavailable_reason() -> str | None:
    """Why a private cluster cannot be made here (None when it can)."""
    if binaries() is None:
        return "PostgreSQL server binaries are not installed (/usr/lib/postgresql/*/bin)"
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return "a private cluster needs root and runuser (initdb runs as the postgres user)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "there is no postgres OS user to run a private cluster as"
    return None


class PrivateCluster:
    """One throwaway PostgreSQL cluster: start, stop, freeze, thaw, remove."""

    def __init__(self):
        self.bin = binaries()
        self.root = Path(tempfile.mkdtemp(prefix="postino-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        user = pwd.getpwnam("postgres")
        os.chown(self.root, user.pw_uid, user.pw_gid)
        self._as_postgres(self.bin / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres",
                          "-E", "UTF8", "--no-sync", "--no-instructions")
        self.frozen: list[int] = []

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's `postgres` database over TCP."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *map(str, command)],
                              check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        # fsync off: an immediate stop kills processes, not the machine, so what reached the
        # OS survives; commits stay synchronous, or an immediate stop would lose them
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off")
        self._as_postgres(self.bin / "pg_ctl", "-D", self.data, "-l", self.root / "log",
                          "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop the server at once, as a crash or a power cut would (no clean shutdown)."""
        self.thaw()
        self._as_postgres(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w",
                          "stop", check=False)

    def postmaster_pid(self) -> int:
        """The running postmaster's process id."""
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])

    def _children(self, parent: int) -> list[int]:
        pids = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                pids.append(int(Path(stat).parent.name))
        return pids

    def freeze(self) -> None:
        """SIGSTOP the postmaster, then every child: connections stay open, nothing answers."""
        postmaster = self.postmaster_pid()
        os.kill(postmaster, signal.SIGSTOP)
        self.frozen = [postmaster, *self._children(postmaster)]
        for pid in self.frozen[1:]:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT whatever `freeze` stopped."""
        for pid in reversed(self.frozen):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.frozen = []

    def remove(self) -> None:
        """Thaw, stop and delete the cluster (always safe to call)."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
