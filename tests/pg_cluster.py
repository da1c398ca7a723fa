"""A throwaway PostgreSQL cluster for the tests, from Debian's `postgresql` package.

initdb into a private temporary directory, the server on a Unix socket in that directory
only (no TCP port, so nothing else on the machine can reach it or clash with it), one fresh
database per test, everything removed at the end. PostgreSQL refuses to run as root, so
under root (CI, containers) its programs run as the `postgres` user the package creates;
the directory is then that user's, in /tmp, because pytest's own temporary tree is private
to root and the server could not enter it.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

# Durability of the test cluster itself does not matter (it is thrown away); what the tests
# check is that the app commits before it answers, which these settings do not change.
SERVER_OPTIONS = (
    "-c listen_addresses='' -c fsync=off -c full_page_writes=off "
    "-c synchronous_commit=off -c max_connections=300"
)


def server_bin() -> Path:
    """Debian's newest installed server (/usr/lib/postgresql/<major>/bin)."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        raise RuntimeError(
            "PostgreSQL's server is not installed: apt-get install postgresql "
            "(scripts/test and .ci/run install it)"
        )
    newest = max(found, key=lambda p: int(Path(p).parent.parent.name))
    return Path(newest).parent


class Cluster:
    def __init__(self) -> None:
        self.bin = server_bin()
        self.as_user: str | None = "postgres" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="mailflow-pg-"))
        if self.as_user:
            pw = pwd.getpwnam(self.as_user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.data = self.root / "data"
        self._names = itertools.count(1)

    def _run(self, program: str, *args: str) -> None:
        cmd = [str(self.bin / program), *args]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-locale", "--no-sync",
        )  # fmt: skip
        options = f"{SERVER_OPTIONS} -c unix_socket_directories='{self.root}'"
        # -w: pg_ctl returns once the server accepts connections.
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                  "-o", options, "start")  # fmt: skip

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host=str(self.root), dbname=dbname, user="postgres", autocommit=True)

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@/{dbname}?host={self.root}"

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        name = f"study_{next(self._names)}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
