"""systemd's service notification (sd_notify) and watchdog for a daemon run as a Type=notify unit, without
libsystemd: one datagram per state change to $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable

log = logging.getLogger("jejak.systemd")


def notify(state: str) -> bool:
    """Send `state` ("READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=...") to systemd; False when not run by it."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    if path.startswith("@"):  # an abstract socket
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            sock.sendall(state.encode())
    except OSError as exc:  # systemd gone or the socket not ours: the daemon runs on regardless
        log.warning("sd_notify %s failed: %s", state.split("=")[0], exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """WatchdogSec= of the unit in seconds, if systemd expects pets from this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000


async def pet_watchdog(interval: float, healthy: Callable[[float], Awaitable[bool]]) -> None:
    """Pet twice per watchdog interval while `healthy(timeout)` says so. An unhealthy daemon is not petted:
    systemd kills and restarts it once the interval passes (Restart=always)."""
    every = interval / 2
    warned = False
    while True:
        if await healthy(every / 2):
            notify("WATCHDOG=1")
            warned = False
        elif not warned:
            log.error("not healthy: the systemd watchdog is not petted and will restart this daemon")
            warned = True
        await asyncio.sleep(every)
