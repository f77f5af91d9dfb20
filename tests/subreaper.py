"""`python tests/subreaper.py COMMAND...`: run COMMAND as a child subreaper, report how it went, then stay and reap.

`ray start` leaves its daemons behind and exits; orphans go to the nearest subreaper, else to PID 1, and in a
sandbox PID 1 may reap late or never, so an exited Ray process lingers as a zombie that Ray itself then trips
over. Here this launcher adopts them (prctl PR_SET_CHILD_SUBREAPER), reaps each as it exits, and exits itself
once none is left.

Protocol: one JSON line on stdout, {"returncode", "stdout", "stderr"} of COMMAND, then stdout and stderr are
closed, so the caller reads that line to EOF and goes on while the launcher keeps reaping.
"""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>
COMMAND_TIMEOUT_S = 120


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def run(command: list[str]) -> dict:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"returncode": -1, "stdout": "", "stderr": f"{' '.join(command)}: {exc}"}


def reap_until_alone() -> None:
    while True:
        try:
            os.wait()
        except ChildProcessError:  # no children left
            return


def main(command: list[str]) -> None:
    become_subreaper()
    print(json.dumps(run(command)), flush=True)
    quiet = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # let go of the caller's pipes
        os.dup2(quiet, fd)
    reap_until_alone()


if __name__ == "__main__":
    main(sys.argv[1:])
