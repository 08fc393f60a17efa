"""`jejak bench --peers`: Jejak's catch-up over CoAP+TCP beside Hypercore 11's replicate-and-verify, on the same
machine in the same run, as a ratio (absolute rates on a shared machine swing 4x between runs; a ratio does not).

Hypercore comes from npm (`hypercore@11`, installed once into the user's cache); without node and npm the part
says so and is skipped. Both sides move the same number of records of about the same size over TCP on
loopback between two processes, and the receiving side verifies everything it stores.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tools.sync_bench import catch_up_tcp

HYPERCORE = "hypercore@11"

SCRIPT = r"""
// Hypercore replicate-and-verify: a writer process holds N signed blocks; a reader process replicates them
// over TCP on loopback into a second core, verifying each (tree hashes and signature) as it arrives.
const Hypercore = require('hypercore')
const net = require('net')
const { spawn } = require('child_process')
const [mode, dir, n, size] = [process.argv[2], process.argv[3], Number(process.argv[4]), Number(process.argv[5])]

async function writer () {
  const core = new Hypercore(dir + '/writer')
  await core.ready()
  const block = Buffer.alloc(size, 7)
  for (let i = 0; i < n; i += 1000) {
    const batch = []
    for (let j = i; j < Math.min(n, i + 1000); j++) batch.push(block)
    await core.append(batch)
  }
  const server = net.createServer(socket => {
    const s = core.replicate(false)
    socket.pipe(s).pipe(socket)
    s.on('error', () => {}); socket.on('error', () => {})
  })
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ key: core.key.toString('hex'), port: server.address().port }) + '\n')
  })
}

async function reader (key, port) {
  const core = new Hypercore(dir + '/reader', Buffer.from(key, 'hex'))
  await core.ready()
  const started = process.hrtime.bigint()
  const socket = net.connect(port, '127.0.0.1')
  const s = core.replicate(true)
  socket.pipe(s).pipe(socket)
  s.on('error', () => {}); socket.on('error', () => {})
  await core.download({ start: 0, end: n }).done()
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  process.stdout.write(JSON.stringify({ records: n, seconds, records_per_s: n / seconds,
    contiguous: core.contiguousLength }) + '\n')
  process.exit(0)
}

if (mode === 'writer') writer()
else reader(process.argv[6], Number(process.argv[7]))
"""


class NoPeer(Exception):
    """The other implementation cannot run here; the message says what to install."""


def _hypercore_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jejak" / "hypercore-11"
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise NoPeer("needs node and npm to run Hypercore (apt install nodejs npm)")
    if not (cache / "node_modules" / "hypercore" / "package.json").exists():
        cache.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(cache),
                               HYPERCORE], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise NoPeer(f"npm install {HYPERCORE} failed: {done.stderr.strip()[-300:]}")
    (cache / "hc_bench.js").write_text(SCRIPT)
    return cache


def hypercore_replicate(n: int, block: int) -> dict[str, Any]:
    """Hypercore: a writer process with `n` blocks of `block` bytes, a reader process replicating all of them."""
    here = _hypercore_dir()
    with tempfile.TemporaryDirectory(prefix="jejak-hypercore-") as tmp:
        writer = subprocess.Popen(["node", "hc_bench.js", "writer", tmp, str(n), str(block)], cwd=here,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert writer.stdout is not None
            hello = json.loads(writer.stdout.readline())
            done = subprocess.run(["node", "hc_bench.js", "reader", tmp, str(n), str(block), hello["key"],
                                   str(hello["port"])], cwd=here, capture_output=True, text=True, timeout=900)
        finally:
            writer.terminate()
            writer.wait()
    if done.returncode != 0:
        raise NoPeer(f"the Hypercore reader failed: {done.stderr.strip()[-300:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["contiguous"] != n:
        raise RuntimeError(f"Hypercore replicated {result['contiguous']} of {n} blocks")
    return result


def run(quick: bool = False, rounds: int | None = None) -> dict[str, Any]:
    """Jejak's catch-up and Hypercore's replicate-and-verify of the same records, alternated `rounds` times (3; 1
    quick) as load on a shared machine drifts: the ratio is the median of the rounds' ratios, each round's kept."""
    n = 5_000 if quick else 100_000
    rounds = rounds or (1 if quick else 3)
    pairs = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="jejak-peers-") as tmp:
            jejak = asyncio.run(catch_up_tcp(Path(tmp), n))
        block = round(jejak["stored_bytes_per_record"])
        try:
            hyper = hypercore_replicate(n, block)
        except NoPeer as exc:
            return {"jejak_tcp": jejak, "hypercore": {"skipped": str(exc)}}
        pairs.append((jejak["records_per_s"], hyper["records_per_s"]))
    ratios = [j / h for j, h in pairs]
    return {"records": n, "block_bytes": block, "rounds": rounds,
            "jejak_tcp_catch_up_per_s": statistics.median(j for j, _ in pairs),
            "hypercore_replicate_verify_per_s": statistics.median(h for _, h in pairs),
            "jejak_over_hypercore": statistics.median(ratios),
            "jejak_over_hypercore_rounds": [round(r, 3) for r in ratios], "goal_jejak_over_hypercore": 1.5,
            "notes": "both over TCP on loopback between two processes, alternated; Hypercore signs once per "
                     "1,000-block append and verifies per upgrade, Jejak signs and verifies every record"}
