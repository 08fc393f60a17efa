"""A school day replayed through real processes: `jejak hub run` on a clock that follows the records it accepts,
and one `jejak edge run` per checkpoint, each started with `--clock` at the moment of its taps. Taps go to an
edge's simulated reader over CoAP, phone submissions to its CoAP resource; each edge's own sync carries them to
the hub. Time is replayed, not waited for: a backlog synced later reaches the hub at the hub's time of then."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coap_server.client import EdgeClient
from tests.harness.faults import EdgeProc, HubProc, http_json
from tests.ports import free_udp
from tests.wait import PATIENCE, wait_for

WIB = dt.timezone(dt.timedelta(hours=7))


def iso(t: int) -> str:
    """An instant in WIB, as `--clock` takes it."""
    return dt.datetime.fromtimestamp(t, WIB).isoformat()


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """Where an edge stands and what its reader records."""

    site: str
    role: str
    staff: str
    event: str | None = None
    school: str | None = None
    container_prefixes: tuple[str, ...] = ()


class Edge(EdgeProc):
    """`jejak edge run` at one checkpoint, its device clock set by --clock at each start."""

    def __init__(self, root: Path, name: str, checkpoint: Checkpoint, hub: str) -> None:
        self.name = name
        self.checkpoint = checkpoint
        super().__init__(root / name, hub=hub)
        self.argv = ["-m", "tools.cli", "edge", "run", "--config", str(self.config)]

    def write_config(self, tap_interval_ms: int) -> None:
        c = self.checkpoint
        extra = "".join(f'{k} = "{v}"\n' for k, v in (("event", c.event), ("school", c.school)) if v)
        prefixes = ", ".join(f'"{p}"' for p in c.container_prefixes)
        self.config.write_text(
            f'site = "{c.site}"\nname = "{self.name}"\ndata_dir = "{self.root / "data"}"\nsensors = []\n'
            f'[checkpoint]\nrole = "{c.role}"\nstaff = ["{c.staff}"]\ncontainer_prefixes = [{prefixes}]\n'
            f'dup_window_s = 0\nportions_per_tag = 0\n{extra}'
            f'[coap]\nhost = "{self.host}"\nport = {self.port}\n[hub]\naddress = "{self.hub}"\n'
            f'[sync]\nmdns = false\ninterval_s = 0.3\n[sim]\ntap_interval_ms = 0\n')

    def start_at(self, t: int, *, hub: str | None = None) -> None:
        """Start with the device clock at `t`; with `hub`, pushing to that address from now on."""
        if hub is not None:
            self.hub = hub
            self.write_config(0)
        self.argv[6:] = ["--clock", iso(t)]
        self.start()
        self.wait_ready(60 * PATIENCE)

    def restart_at(self, t: int) -> None:
        self.stop()
        self.start_at(t)


class Day:
    """A hub with an MBG plan and the day's edges, each enrolled once the hub is up (`start_hub`)."""

    def __init__(self, root: Path, plan: str, checkpoints: dict[str, Checkpoint]) -> None:
        self.hub = HubProc(root / "hub", checkpoint_interval=3600)
        (root / "plan.toml").write_text(plan)
        with (self.hub.root / "hub.toml").open("a") as fh:
            fh.write(f'mbg_plan = "{root / "plan.toml"}"\n[bridges]\nenabled = false\n')
        self.dead = f"coap://127.0.0.1:{free_udp()}"  # an uplink that answers nothing
        self.edges = {name: Edge(root, name, c, self.hub.coap) for name, c in checkpoints.items()}

    def start_hub(self, t: int) -> None:
        """The hub's time follows the records it accepts (a past day replayed), starting at `t`."""
        self.hub.argv = ["-m", "tools.cli", "hub", "run", "--clock", f"{iso(t)} records",
                         "--config", str(self.hub.root / "hub.toml")]
        self.hub.start()
        self.hub.wait_up(60 * PATIENCE)

    def enroll(self) -> None:
        for e in self.edges.values():
            self.hub.enroll(e.key, e.name)

    async def tap(self, name: str, *uids: str, staff: str | None = None) -> list[list[dict[str, Any]]]:
        """The staff card, the cards tapped, the staff card again: what the reader showed for each."""
        edge = self.edges[name]
        card = staff or edge.checkpoint.staff
        async with EdgeClient(edge.coap, timeout=30) as client:
            return [await client.tap(uid) for uid in (card, *uids, card)]

    async def tap_accepted(self, name: str, *tags: str) -> list[dict[str, Any]]:
        """`tap`, every container tap acknowledged: the acknowledgements."""
        shown = await self.tap(name, *tags)
        acks = [fb for taps in shown[1:-1] for fb in taps if fb.get("seq") is not None]
        assert [fb["status"] for fb in acks] == ["accepted"] * len(tags), shown
        return acks

    async def submit(self, name: str, kind: str, body: dict[str, Any]) -> None:
        async with EdgeClient(self.edges[name].coap, timeout=30) as client:
            await client.submit(kind, body)

    def synced(self, *names: str) -> bool:
        heads = self.hub.heads()
        return all(heads.get(e.device_id, (0,))[0] == len(e.own_log())
                   for e in (self.edges[n] for n in names))

    async def wait_synced(self, *names: str) -> None:
        await wait_for(lambda: self.synced(*names), 60, what=f"{names}'s records at the hub", step=0.1)

    async def restart_hub(self) -> None:
        """Stop the hub and start it again where its replayed time stood; wait until it has counted its stored
        records back in (a restarted hub answers at once and counts them behind)."""
        now = self.api("/api/dashboard/summary")["now"]
        self.hub.stop()
        self.start_hub(now)
        await wait_for(lambda: not self.api("/api/dashboard/summary")["refill"]["running"], 60,
                       what="the restarted hub to count its stored records", step=0.1)

    def api(self, path: str, date: str | None = None) -> Any:
        if date is not None:
            path += f"{'&' if '?' in path else '?'}date={date}"
        return http_json(f"{self.hub.url}{path}", timeout=30)

    def jejak_mbg(self, query: str, date: str, lang: str = "id") -> str:
        """`jejak mbg QUERY` as a kitchen head runs it, in its own process."""
        done = subprocess.run([sys.executable, "-m", "tools.cli", "mbg", query, "--hub-url", self.hub.url,
                               "--lang", lang, "--date", date], capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def stop(self) -> None:
        for e in self.edges.values():
            e.stop()
        self.hub.stop()


def findings(answer: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """/api/mbg/violations' findings by (code, subject)."""
    return {(f["code"], f["subject"]): f for f in answer["findings"]}


def deliveries(day: Day, date: str) -> dict[str, dict[str, Any]]:
    """/api/mbg/deliveries by school."""
    return {d["school"]: d for k in day.api("/api/mbg/deliveries", date)["kitchens"] for d in k["schools"]}
