#!/usr/bin/env python3
"""Runs a command as a child and kills it when this process's parent goes away.

Test harnesses start local servers through this script so that a test process that dies (panic,
SIGKILL, CI timeout) never leaves moto, the Grafana emulator or Prometheus running.

    watchdog.py [--parent-pid PID] -- COMMAND [ARGS...]
"""
import os
import signal
import subprocess
import sys
import time


def main() -> int:
    args = sys.argv[1:]
    parent = os.getppid()
    if args[:1] == ["--parent-pid"]:
        parent = int(args[1])
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: watchdog.py [--parent-pid PID] -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    child = subprocess.Popen(args, start_new_session=True)

    def stop(*_):
        try:
            os.killpg(child.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        if child.poll() is not None:
            return child.returncode
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            stop()
        if os.getppid() == 1 and parent != 1:
            stop()
        time.sleep(0.3)


if __name__ == "__main__":
    sys.exit(main())
