"""A storage-latency model for benchmarks: an LD_PRELOAD shim, compiled with cc at bench time, that makes every
fsync, fdatasync and msync(MS_SYNC) take as long as it would on an SD card.

Why a shim: the benchmarks' own machines fsync in well under a millisecond, so group commit looked free there
and said nothing about a Raspberry Pi, whose SD card does 100-1,000 synced writes a second. Sleeping in the
libc call (then making it) slows exactly the durable commits and nothing else; LMDB's calls go through libc,
so the delay reaches them in a process started with the shim preloaded. The delay is read from
JEJAK_FSYNC_DELAY_US at the first call, so one compiled shim serves every setting.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DELAY_ENV = "JEJAK_FSYNC_DELAY_US"
COUNT_ENV = "JEJAK_FSYNC_COUNT_FILE"

SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static long delay_us = -1;
static unsigned long calls;

static void wait_like_a_card(void) {
    if (delay_us < 0) {
        const char *v = getenv("JEJAK_FSYNC_DELAY_US");
        delay_us = v ? atol(v) : 0;
    }
    __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
    if (delay_us > 0) {
        struct timespec ts = {delay_us / 1000000, (delay_us % 1000000) * 1000};
        while (nanosleep(&ts, &ts) != 0) {}
    }
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    wait_like_a_card();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    wait_like_a_card();
    return real(fd);
}

int msync(void *addr, size_t len, int flags) {
    static int (*real)(void *, size_t, int);
    if (!real) real = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "msync");
    if (flags & MS_SYNC) wait_like_a_card();
    return real(addr, len, flags);
}

/* How many synced writes the process made, written at exit when asked (the bench divides records by it). */
__attribute__((destructor)) static void report(void) {
    const char *path = getenv("JEJAK_FSYNC_COUNT_FILE");
    if (!path) return;
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f, "%lu\n", calls);
    fclose(f);
}
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Shim:
    """A compiled shim and how to start a process with it."""

    library: Path

    def environ(self, delay_ms: float, count_file: Path | None = None) -> dict[str, str]:
        """The environment of a process whose synced writes take `delay_ms` more each."""
        env = dict(os.environ)
        env["LD_PRELOAD"] = " ".join(filter(None, [str(self.library), env.get("LD_PRELOAD", "")]))
        env[DELAY_ENV] = str(round(delay_ms * 1000))
        if count_file is not None:
            env[COUNT_ENV] = str(count_file)
        return env


class NoCompiler(Exception):
    """The shim cannot be built here (no C compiler, or it failed); the message says what to install."""


def build(directory: Path) -> Shim:
    """Compile the shim into `directory`; NoCompiler if there is no working `cc`."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise NoCompiler("no C compiler (cc) on PATH: install one (apt install gcc) to model slow storage")
    source = directory / "slow_storage.c"
    library = directory / "slow_storage.so"
    source.write_text(SOURCE)
    done = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(library), str(source), "-ldl"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise NoCompiler(f"{cc} could not build the slow-storage shim: {done.stderr.strip()[:300]}")
    return Shim(library=library)
