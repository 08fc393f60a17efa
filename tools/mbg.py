"""`jejak mbg`: what left the kitchens and reached the schools, asked of a running hub, in plain words."""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import json
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hub
from ledger.errors import CodedError

from .hubclient import HUB_URL_HELP, HubRefused, HubUnreachable, default_hub_url, open_url, unreachable
from .lang import LANGUAGES, locale_lang
from .stop import stop

# The words the dashboard uses too (statuses, findings, events), so both say the same thing.
WORDS_FILE = Path(hub.__file__).parent / "static" / "words.json"

QUERIES = {
    "summary": ("/api/dashboard/summary", "the day at a glance"),
    "deliveries": ("/api/mbg/deliveries", "the day's deliveries: one line per school under its kitchen"),
    "late": ("/api/mbg/late", "deliveries that arrived after their due time"),
    "short": ("/api/mbg/short", "deliveries with fewer portions than planned"),
    "missing": ("/api/mbg/missing", "deliveries not arrived after their due time (missing, or truck overdue)"),
    "lost": ("/api/mbg/lost", "containers lost or not back at the kitchen"),
    "violations": ("/api/mbg/violations", "food-safety violations and every other finding"),
    "stock": ("/api/mbg/stock", "stock on hand per kitchen (with --date: as it stood at the end of that day)"),
    "epcis": ("/api/mbg/epcis", "the day's scans as GS1 EPCIS 2.0 JSON-LD (always JSON)"),
}

EXAMPLES = """examples:
  jejak mbg deliveries --hub-url http://hub.local:8470
  jejak mbg late --date 2026-03-02
  jejak mbg violations --lang en
  jejak mbg container 04A1B2C3D4E5F6
  jejak mbg short --json | jq '.short[].shortfall'

exit codes: 0 answered; 2 usage; 82 the hub did not answer (UNREACHABLE); 85 the hub refused the query
(HUB_REFUSED: a bad --date, an unknown container); docs/ERRORS.md lists every code.
--lang defaults to the locale (LC_ALL, LC_MESSAGES, LANG): Indonesian for id_*, else English."""

# The command's own words; statuses, findings and events come from WORDS_FILE.
TEXT: dict[str, dict[str, str]] = {
    "en": {
        "deliveries_on": "Deliveries on {date}", "kitchen": "Kitchen", "school": "School", "status": "Status",
        "arrived": "Arrived", "due": "Due", "late_by": "Late by", "portions": "Portions", "received": "Received",
        "expected": "Planned", "short_by": "Short by", "left": "Left kitchen", "departed": "Left",
        "container": "Container",
        "reason": "Reason", "time": "Time", "step": "Step", "where": "Where", "device": "Device", "temp": "Temp",
        "kind": "Finding", "subject": "About", "what": "What", "item": "Item", "on_hand": "On hand", "flags": "Flags",
        "none": "Nothing to report on {date}.", "no_stock": "No stock recorded at any kitchen yet.",
        "no_deliveries": "No deliveries on {date}: the plan expects none that day (a weekend or a closed date) "
                         "and none was tapped.",
        "no_plan": "The hub has no MBG plan, so it expects no deliveries.",
        "no_plan_hint": "hint: name the plan in hub.toml (mbg_plan = \"mbg.toml\") and restart the hub "
                        "(hub/mbg/README.md)",
        "total": "Total", "portions_line": "portions {received} of {expected} received", "violations": "Food safety",
        "findings": "Findings", "scans": "taps today", "devices": "devices", "alerts": "act-now findings",
        "scans.one": "tap today", "devices.one": "device", "deliveries.one": "delivery",
        "summary_on": "MBG on {date}", "deliveries": "deliveries", "open": "still open", "unknown": "–",
        "history": "History of container {tag}", "day": "day", "days": "days", "days.one": "day",
        "flag.overdraw": "used more than received", "flag.receipt_late": "received after it was used",
        "flag.count_difference": "count differs from the book",
        "flag.unit_mismatch": "unit differs from the item's",
        "stock_on": "Stock at the end of {date}", "no_stock_on": "No stock recorded at any kitchen by the end of {date}.",
        "heading.late": "Late deliveries", "heading.short": "Short deliveries",
        "heading.missing": "Deliveries not arrived", "heading.lost": "Containers lost or not back",
        "counting": "The hub has restarted and is still counting {n} stored records: the figures below are not "
                    "complete yet; ask again in a moment.",
    },
    "id": {
        "deliveries_on": "Pengiriman {date}", "kitchen": "Dapur", "school": "Sekolah", "status": "Status",
        "arrived": "Tiba", "due": "Batas", "late_by": "Terlambat", "portions": "Porsi", "received": "Diterima",
        "expected": "Rencana", "short_by": "Kurang", "left": "Berangkat", "departed": "Berangkat",
        "container": "Ompreng",
        "reason": "Alasan", "time": "Waktu", "step": "Langkah", "where": "Lokasi", "device": "Perangkat",
        "temp": "Suhu", "kind": "Temuan", "subject": "Tentang", "what": "Keterangan", "item": "Bahan",
        "on_hand": "Stok", "flags": "Tanda", "none": "Tidak ada yang perlu dilaporkan pada {date}.",
        "no_stock": "Belum ada stok tercatat di dapur mana pun.",
        "no_deliveries": "Tidak ada pengiriman pada {date}: rencana tidak menjadwalkan pengiriman hari itu (akhir "
                         "pekan atau tanggal libur) dan tidak ada yang di-tap.",
        "no_plan": "Hub belum punya rencana MBG, jadi tidak ada pengiriman yang diharapkan.",
        "no_plan_hint": "petunjuk: sebutkan rencana di hub.toml (mbg_plan = \"mbg.toml\") lalu jalankan ulang hub "
                        "(hub/mbg/README.md)",
        "total": "Jumlah", "portions_line": "porsi {received} dari {expected} diterima",
        "violations": "Keamanan pangan", "findings": "Temuan", "scans": "tap hari ini", "devices": "perangkat",
        "alerts": "temuan yang harus segera ditindak", "summary_on": "MBG {date}", "deliveries": "pengiriman",
        "open": "masih berjalan", "unknown": "–", "history": "Riwayat ompreng {tag}", "day": "hari", "days": "hari",
        "flag.overdraw": "dipakai melebihi yang diterima", "flag.receipt_late": "penerimaan dicatat setelah dipakai",
        "flag.count_difference": "hitungan beda dengan catatan",
        "flag.unit_mismatch": "satuan beda dengan bahan",
        "stock_on": "Stok pada akhir {date}", "no_stock_on": "Belum ada stok tercatat di dapur mana pun sampai akhir {date}.",
        "heading.late": "Pengiriman terlambat", "heading.short": "Pengiriman kurang",
        "heading.missing": "Pengiriman belum tiba", "heading.lost": "Ompreng hilang atau belum kembali",
        "counting": "Hub baru dinyalakan ulang dan masih menghitung {n} catatan tersimpan: angka di bawah belum "
                    "lengkap; tanyakan lagi sebentar lagi.",
    },
}


# How the command says it stopped, in each language. The error's code and exit code stay the class's; only its
# words change. The hub answers in English: its refusals are said here by their code (the hub's words kept after
# them, for whoever helps), and a code this table does not know by a sentence that quotes them.
FAILURES: dict[str, dict[str, str]] = {
    "en": {
        "unreachable": "no answer from {url}: {reason}",
        "unreachable.hint": "check that the hub runs and --hub-url points at its HTTP port",
        "reason.refused": "connection refused, nothing listens on that port",
        "reason.timeout": "no answer within {s} s",
        "reason.name": "the name {host} does not resolve",
        "reason.route": "no route to that address (the network is down or does not reach it)",
        "reason.reset": "the connection was cut by the other side",
        "reason.other": "{text}",
    },
    "id": {
        "unreachable": "hub tidak menjawab di {url}: {reason}",
        "unreachable.hint": "periksa bahwa hub berjalan dan --hub-url menunjuk ke port HTTP-nya",
        "reason.refused": "sambungan ditolak, tidak ada program yang mendengarkan di port itu",
        "reason.timeout": "tidak ada jawaban dalam {s} detik",
        "reason.name": "nama {host} tidak dikenal (DNS)",
        "reason.route": "alamat itu tidak terjangkau (jaringan mati atau tidak sampai ke sana)",
        "reason.reset": "sambungan diputus oleh pihak sana",
        "reason.other": "{text}",
        "hub_said": "{said} (jawaban hub {url}: {status} {english})",
        "MBG_INPUT.date": "hub tidak bisa membaca tanggal {date}: tulis TTTT-BB-HH, hari antara 1970-01-01 dan "
                          "2999-12-31",
        "MBG_INPUT.date.hint": "mis. --date {example}",
        "MBG_INPUT": "hub tidak bisa memakai pertanyaan ini",
        "MBG_INPUT.hint": "periksa pilihan yang diberikan (--date TTTT-BB-HH)",
        "MBG_NOT_FOUND": "tidak ada tap yang menyebut ompreng {tag}: hub belum pernah melihat tag ini",
        "MBG_NOT_FOUND.hint": "periksa UID tag pada ompreng",
        "MBG_BEYOND_WINDOW": "hub tidak lagi menyimpan tap hari itu di memori (lebih lama dari batas simpannya, atau "
                             "belum dimuat ulang setelah hub dinyalakan ulang): pengiriman, temuan dan pelanggarannya "
                             "tetap bisa ditanyakan, tap dan perjalanannya tidak",
        "MBG_BEYOND_WINDOW.hint": "ekspor catatan hari itu dari log hub untuk audit, atau naikkan mbg_keep_days agar "
                                  "hub menyimpan lebih banyak hari",
        "NOT_FOUND": "hub tidak mengenal pertanyaan ini: mungkin bukan hub Jejak, atau versinya lebih lama dari "
                     "perintah ini",
        "NOT_FOUND.hint": "periksa --hub-url, atau minta operator memperbarui hub",
        "UNAUTHORIZED": "hub meminta token untuk pertanyaan ini",
        "UNAUTHORIZED.hint": "pertanyaan MBG biasanya terbuka untuk siapa saja; tanyakan operator hub",
        "FORBIDDEN": "hub tidak mengizinkan pertanyaan ini",
        "FORBIDDEN.hint": "tanyakan operator hub",
        "BUSY": "hub sedang sibuk",
        "BUSY.hint": "coba lagi sebentar lagi",
        "INTERNAL": "hub gagal menjawab karena kesalahan di dalam hub",
        "INTERNAL.hint": "coba lagi; jika tetap gagal, laporkan ke operator hub (log hub memuat rinciannya)",
        "refused": "hub menolak pertanyaan ini",
        "refused.hint": "periksa --hub-url dan pertanyaannya",
        "refused.hub_hint": "petunjuk hub: {hint}",
    },
}

TIMEOUT_S = 30  # how long a question waits for the hub
# The hub's hint for a container no scan names (hub.mbg.view.TAG_HINT, whose package this command does not load:
# a second of imports), said here in the reader's language.
TAG_HINT = "check the tag uid on the ompreng"


MONTHS_ID = ("Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus", "September", "Oktober",
             "November", "Desember")
WIB = 7 * 3600
ZONES = {WIB: "WIB", 8 * 3600: "WITA", 9 * 3600: "WIT"}
WEEKDAYS_ID = ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu")


# The parts of a danger_zone or hot_holding finding (hub.mbg.analysis.safety_part), by the words that say them.
_TEMPERATURE_PARTS = {"served": "served", "not_served": "open"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Speaker:
    """Turns the hub's ids, seconds and centi-degrees into names, times of day, minutes and °C in one language."""

    lang: str
    names: dict[str, Any]
    words: dict[str, str]

    def __call__(self, key: str, **values: Any) -> str:
        text = TEXT[self.lang].get(key) or self.words.get(key) or key
        return text.format(**values) if values else text

    def count(self, key: str, n: Any) -> str:
        """The word for `n` things: English says '1 container' and '2 containers' (a '.one' key holds the
        singular); Indonesian does not change the word."""
        one = f"{key}.one"
        if n == 1 and (one in TEXT[self.lang] or one in self.words):
            return self(one)
        return self(key)

    def date(self, iso: str) -> str:
        """A day as its readers write it: 'Senin, 12 Januari 2026' in Indonesian, the ISO date in English."""
        try:
            day = dt.date.fromisoformat(iso)
        except (TypeError, ValueError):
            return iso
        if self.lang != "id":
            return iso
        return f"{WEEKDAYS_ID[day.weekday()]}, {day.day} {MONTHS_ID[day.month - 1]} {day.year}"

    def num(self, n: Any, places: int = 0) -> str:
        """A number in the reader's notation: Indonesian groups thousands with '.' and writes decimals after ','
        (1.234,5); English keeps the plain digits the hub's JSON has."""
        if n is None or isinstance(n, bool) or not isinstance(n, int | float):
            return "–" if n is None else str(n)
        if self.lang != "id":
            return f"{n:.{places}f}" if places else str(n)
        text = f"{n:,.{places}f}"
        return text.replace(",", " ").replace(".", ",").replace(" ", ".")

    def quantity(self, amount: int, unit: str) -> str:
        """Stock as a kitchen says it: 13500 g is 13,5 kg (signed data keeps integers in the smallest unit)."""
        big = {"g": "kg", "ml": "l"}.get(unit)
        if big and (abs(amount) >= 1000 or amount == 0):  # nothing left reads '0 kg' beside the other kilograms
            text = self.num(amount / 1000, 3).rstrip("0").rstrip(",.")
            return f"{text} {big}"
        return f"{self.num(amount)} {unit}"

    def offset(self, site: str | None = None) -> int:
        """A kitchen's or school's offset from UTC in seconds, as the hub's names carry it from the plan: a school
        in Papua keeps WIT in a plan whose default is WIB. The plan's default for a site the names do not list (and
        for every site when a hub older than per-site zones answers)."""
        for part in ("schools", "kitchens"):
            known = self.names.get(part, {}).get(site) if site else None
            if known and isinstance(known.get("tz_offset_s"), int):
                return int(known["tz_offset_s"])
        return int(self.names.get("tz_offset_s", WIB))

    def zoned(self, sites: Iterable[str | None]) -> bool:
        """Whether a table's rows are in more than one time zone: then each time says its zone beside it."""
        return len({self.offset(site) for site in sites}) > 1

    def at(self, key: str, sites: Iterable[str | None] = ()) -> str:
        """A column of times of day, with the zone they are in: 'Tiba (WIT)' when every row's site keeps WIT; 'Tiba
        (waktu setempat)' when the rows are in different zones (each time then names its own)."""
        offsets = {self.offset(site) for site in sites} or {self.offset()}
        if len(offsets) > 1:
            return f"{self(key)} ({self('local_time')})"
        offset = offsets.pop()
        return f"{self(key)} ({ZONES.get(offset) or f'UTC{offset / 3600:+g}'})"

    def clock(self, t: int | None, site: str | None = None, *, zoned: bool = False) -> str:
        """A Unix time as the local time of day (HH:MM) at `site` (a kitchen or a school; the plan's zone without
        one); with `zoned`, the zone follows it ('09:00 WIT'), for a table whose rows are in different zones."""
        if t is None:
            return "–"
        offset = self.offset(site)
        s = (t + offset) % 86_400
        text = f"{s // 3600:02d}:{s % 3600 // 60:02d}"
        return f"{text} {ZONES.get(offset) or f'UTC{offset / 3600:+g}'}" if zoned else text

    def steps(self, detail: str) -> str:
        """The steps an out_of_order finding's detail names ('... out of order: received before departed'), in
        words; '' if it names none this command knows."""
        said = []
        for pair in detail.partition(": ")[2].split(", "):
            later, _, earlier = pair.partition(" before ")
            if f"event.{later}" not in self.words or f"event.{earlier}" not in self.words:
                return ""
            said.append(self("say.step_before", later=self(f"event.{later}"), earlier=self(f"event.{earlier}")))
        return ", ".join(said)

    def arrival(self, d: dict[str, Any], *, zoned: bool = False) -> str:
        """When a delivery came in, at its school's time: its first tap in, and where a later vehicle came late,
        that one too."""
        first = d["arrived_at"] or d["received_at"]
        if first is None:
            return "–"
        last = d["deadline_at"] + d["late_s"] if d["late_s"] else first
        school = d.get("school")
        return self.clock(first, school, zoned=zoned) if last == first else \
            f"{self.clock(first, school)}, {self.clock(last, school, zoned=zoned)}"

    def clock_on(self, t: int | None, iso: str, site: str | None = None, *, zoned: bool = False) -> str:
        """A time of day at `site` in a day's history, with how many days from that day it was when on another
        (empties back after midnight, a batch cooked the evening before): '00:20 (+1 hari)'."""
        text = self.clock(t, site, zoned=zoned)
        if t is None:
            return text
        try:
            day = dt.date.fromisoformat(iso).toordinal() - dt.date(1970, 1, 1).toordinal()
        except ValueError:
            return text
        apart = (t + self.offset(site)) // 86_400 - day
        return f"{text} ({apart:+d} {self.count('days', abs(apart))})" if apart else text

    def minutes(self, seconds: int | None) -> str:
        if seconds is None:
            return "–"
        seconds = abs(seconds)
        if seconds >= 5400:
            h, m = divmod(round(seconds / 60), 60)
            return f"{self.num(h)} {self('unit.h')} {m} {self('unit.min')}"
        return f"{round(seconds / 60)} {self('unit.min')}"

    def celsius(self, cc: int | None) -> str:
        return "–" if cc is None else f"{self.num(cc / 100, 1)} °C"

    def school(self, sid: str | None) -> str:
        if not sid:
            return "–"
        s = self.names.get("schools", {}).get(sid)
        return f"{s['name']} ({sid})" if s and s.get("name") else sid

    def kitchen(self, kid: str | None) -> str:
        if not kid:
            return "–"
        k = self.names.get("kitchens", {}).get(kid)
        return f"{k['name']} ({kid})" if k and k.get("name") else kid

    def device(self, hex_id: str | None) -> str:
        if not hex_id:
            return "–"
        d = self.names.get("devices", {}).get(hex_id)
        if d and d.get("name"):
            return f"{d['name']} ({d['site']})" if d.get("site") else str(d["name"])
        return f"{d['site']} {hex_id[:8]}" if d else hex_id[:8]

    def subject(self, code: str, subject: str) -> str:
        """A finding's subject: a school, a kitchen, a device, a site or 'kitchen/item'."""
        if code in ("clock_skew", "late_sync", "clock_went_back", "device_clock"):
            return self.device(subject)
        if subject in self.names.get("schools", {}):
            return self.school(subject)
        if subject in self.names.get("kitchens", {}):
            return self.kitchen(subject)
        if "/" in subject:
            kitchen, item = subject.split("/", 1)
            return f"{self.kitchen(kitchen)}: {item}"
        return subject

    def status(self, delivery: dict[str, Any]) -> str:
        return self(f"status.{delivery['status']}")

    def finding(self, f: dict[str, Any], deliveries: dict[str, dict[str, Any]],
                units: dict[str, str] | None = None) -> str:
        """What a finding says, from its code and values (the hub's English detail when nothing fits)."""
        code = f["code"]
        d = deliveries.get(f["subject"], {})
        measured, limit = f.get("measured"), f.get("limit")
        site = d.get("school") or f["subject"]  # a delivery's times are said at its school, as the hub judges them
        tail = ""  # words said after the finding's sentence
        values: dict[str, Any] = {
            "n": len(f.get("containers") or []) or measured or len(f.get("records") or []),
            "other": self.school(f.get("other_school")),
            "arrived": self.clock(d.get("arrived_at") or d.get("received_at"), site),
            "due": self.clock(d.get("deadline_at"), site), "departed": self.clock(d.get("departed_at"), site),
            "late": self.minutes(measured), "received": self.num(d.get("received_portions", measured)),
            "expected": self.num(d.get("expected", limit)), "short": self.num(d.get("shortfall")),
            "skew": self.minutes(measured), "lag": self.minutes(measured), "measured": self.num(measured),
            "limit": self.num(limit), "kitchen": self.kitchen(f.get("other_kitchen"))}
        key = f"say.{code}"
        if code == "late_delivery" and d and measured:
            # When the meals came late: the first vehicle's arrival, or a later vehicle's (its containers named).
            values.update(arrived=self.clock(d["deadline_at"] + measured, site), first=values["arrived"])
            if f.get("containers"):
                key = "say.late_delivery_part"
        if code == "device_clock" and f.get("part") in ("behind", "ahead"):
            key = f"say.device_clock_{f['part']}"
        if code == "staff_not_on_roster" and f.get("part") in ("until", "from"):
            # A card its kitchen's roster lists only for a while (`limit` when that ended or begins): no advice to add it.
            key, values["at"] = f"say.staff_not_on_roster_{f['part']}", self.clock_on(limit, f.get("date") or "", site)
        elif code == "staff_not_on_roster" and not f.get("other_kitchen"):
            key = "say.staff_not_on_roster_unknown"
        if code in ("cook_to_serve", "danger_zone"):
            values.update(measured=self.minutes(measured), limit=self.minutes(limit))
            # The meals served late, not served yet and timed to their arrival are each a finding of their own
            # (`part`); a day stored before they were says so in its detail only.
            part, detail = f.get("part"), f.get("detail", "")
            if code == "cook_to_serve" and (part == "not_served" or (part is None and "still open" in detail)):
                key = "say.cook_to_serve_open"
            elif code == "cook_to_serve" and (part == "arrival" or (part is None and "not tapped served" in detail)):
                key = "say.cook_to_serve_arrived"
        elif code == "hot_holding":
            values.update(measured=self.celsius(measured), limit=self.celsius(limit))
        elif code == "no_temperature" and measured is not None and measured == limit:
            key = "say.no_temperature_all"  # none of the delivery's containers: 'all 30', not '30 of the 30'
        elif code in ("stock_overdraw", "stock_receipt_late", "stock_count_difference") and (units or {}).get(f["subject"]):
            unit = (units or {})[f["subject"]]
            values.update(measured=self.quantity(measured or 0, unit), limit=self.quantity(limit or 0, unit))
        elif code == "stock_unit_mismatch":
            values["unit"] = (units or {}).get(f["subject"], "")
            # The sentence names the card's unit; the unit the movement was recorded in ('Ikat', 'kg') is said after
            # it, so whoever records it again sees which one the card did not take.
            if recorded := _recorded_unit(f):
                tail = f" ({self('recorded_as', amount=f'{self.num(measured)} {recorded}')})"
        elif code == "out_of_order" and (steps := self.steps(str(f.get("detail", "")))):
            key, values["steps"] = "say.out_of_order_steps", steps
        elif code == "duplicate_scan":
            # `measured` is the extra reads (a day stored before it was says none: one extra read each).
            tags = len(f.get("containers") or [])
            values["n"] = tags or len(f.get("records") or [])
            extra = measured if isinstance(measured, int) and measured > 0 else values["n"]
            values.update(extra=self.num(extra), times=self.num(extra + 1))
            if not tags:
                key = "say.duplicate_scan_taps"
            elif extra == tags:
                key = "say.duplicate_scan_twice"
        elif code == "missing_delivery" and f.get("containers"):
            # Nothing tapped in, but its containers came back to the kitchen (returned_without_arrival).
            key = "say.missing_delivery_returned"
            values.update(n=len(f["containers"]), out=self.num(d.get("containers_out", len(f["containers"]))))
        elif code == "over_receipt" and limit == 0:
            key = "say.over_receipt_unplanned"  # meals to a school closed that day
            values.update(sent=self.num(d.get("departed_portions", 0)))
        elif code == "container_returned_late":
            # Back days after its day: `measured` the days late, `limit` when it came back (the day said at the school).
            on = "–" if limit is None else dt.datetime.fromtimestamp(limit + self.offset(site), dt.UTC).date().isoformat()
            values.update(days=self.num(measured), on=on)
        elif code in ("short_delivery", "missing_delivery", "over_receipt"):
            values["n"] = d.get("expected", limit)  # their sentences count the portions expected
        if code in ("danger_zone", "hot_holding") and f.get("part") in _TEMPERATURE_PARTS:
            # The meals served and the meals not served yet are findings of their own; a day stored before they
            # were has one finding of both, said without a count.
            key = f"say.{code}_{_TEMPERATURE_PARTS[f['part']]}"
        if code in ("late_delivery", "short_delivery", "missing_delivery", "overdue_delivery") and not d:
            return str(f.get("detail", ""))
        if key not in self.words:
            return str(f.get("detail", ""))
        if values["n"] == 1 and f"{key}.one" in self.words:
            key = f"{key}.one"
        return self.words[key].format(**values) + tail


def _recorded_unit(f: dict[str, Any]) -> str:
    """The unit a stock_unit_mismatch movement was recorded in, as the hub's detail writes it ('use of 2 Ikat on a
    card kept in ikat: ...', hub.mbg.stock.stock_findings); '' if the detail does not say it that way."""
    head = str(f.get("detail", "")).partition(" on a card kept in ")[0]
    _, of, rest = head.partition(" of ")
    qty, _, unit = rest.partition(" ")
    return unit if of and unit and qty == str(f.get("measured")) else ""


def load_words(lang: str) -> dict[str, str]:
    words: dict[str, dict[str, str]] = json.loads(WORDS_FILE.read_text(encoding="utf-8"))
    return words[lang]


def fetch(hub_url: str, path: str, params: dict[str, str] | None = None) -> Any:
    query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v})
    url = f"{hub_url.rstrip('/')}{path}" + (f"?{query}" if query else "")
    try:
        with open_url(urllib.request.Request(url, headers={"Accept": "application/json"}), timeout=TIMEOUT_S) as resp:
            try:
                body = resp.read()
            except OSError as exc:  # the hub went quiet or away in the middle of its answer
                raise unreachable(url, exc) from None
        return json.loads(body)
    except HubRefused as exc:  # the hub's hint speaks of its query (?date=); this command's user types --date
        if exc.hint and "?date=" in exc.hint:
            exc.hint = exc.hint.replace("?date=", "--date ")
        raise


def _reason(cause: BaseException | None, url: str) -> tuple[str, dict[str, Any]]:
    """Why the hub did not answer, as a FAILURES key and its values, from the socket's error behind it."""
    if isinstance(cause, ConnectionRefusedError):
        return "reason.refused", {}
    if isinstance(cause, TimeoutError):
        return "reason.timeout", {"s": TIMEOUT_S}
    if isinstance(cause, socket.gaierror):
        return "reason.name", {"host": urllib.parse.urlsplit(url).hostname or url}
    if isinstance(cause, OSError) and cause.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "reason.route", {}
    if isinstance(cause, ConnectionError):
        return "reason.reset", {}
    text = (cause.strerror if isinstance(cause, OSError) else None) or str(cause)
    return "reason.other", {"text": text}


def spoken(exc: CodedError, lang: str, *, tag: str | None = None, date: str | None = None) -> CodedError:
    """`exc` in the reader's language: an error of the same class (its code and exit code unchanged) with the
    message and hint said in `lang`. `tag` and `date` are what the reader typed, for the sentences that name them."""
    words = FAILURES.get(lang, FAILURES["en"])

    def say(key: str, **values: Any) -> str:
        return (words.get(key) or FAILURES["en"][key]).format(**values)

    if isinstance(exc, HubUnreachable):
        key, values = _reason(exc.reason, exc.url)
        gone = unreachable(exc.url, exc.reason or exc)
        gone.message, gone.hint = say("unreachable", url=exc.url, reason=say(key, **values)), say("unreachable.hint")
        return gone
    if not isinstance(exc, HubRefused) or lang == "en" or not exc.url:
        return exc
    code, message, hub_hint = exc.said.get("code", ""), exc.said.get("message", ""), exc.said.get("hint")
    if code == "MBG_INPUT" and message.startswith("date:"):
        said = say("MBG_INPUT.date", date=repr(date) if date else "itu")
        hint = say("MBG_INPUT.date.hint", example="2026-03-02")
    elif code == "MBG_NOT_FOUND" and tag is not None:
        said, hint = say("MBG_NOT_FOUND", tag=repr(tag)), say("MBG_NOT_FOUND.hint")
        if hub_hint and hub_hint != TAG_HINT:  # the hub says more (days beyond its window): its words follow
            hint += "; " + say("refused.hub_hint", hint=hub_hint)
    elif code in words and f"{code}.hint" in words:
        said, hint = say(code), say(f"{code}.hint")
    else:
        said = say("refused")
        hint = say("refused.hub_hint", hint=hub_hint) if hub_hint else say("refused.hint")
    english = f"{code}: {message}" if code else exc.message.split(": ", 1)[-1]
    refused = HubRefused(say("hub_said", said=said, url=exc.url, status=exc.status, english=english), hint=hint,
                         where=exc.where)
    refused.status, refused.url, refused.said = exc.status, exc.url, exc.said
    return refused


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    out = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out


def _fold(findings: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Findings one per row, except that data-quality notices (not to act on now) of one kind are folded into
    one row when there are more than three of them: twenty 'synced late' lines would bury the few that matter."""
    out: list[list[dict[str, Any]]] = []
    kinds: dict[str, list[dict[str, Any]]] = {}
    for f in findings:
        if f["severity"] == "alert":
            out.append([f])
        else:
            kinds.setdefault(f["code"], []).append(f)
    for group in kinds.values():
        out.extend([group] if len(group) > 3 else [[f] for f in group])
    return out


def _by_school(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["school"]: r for r in rows}


def render(name: str, data: Any, say: Speaker, extra: dict[str, Any] | None = None) -> str:
    """The hub's answer to query `name` as lines for people."""
    date = say.date(data.get("date", "")) if isinstance(data, dict) else ""
    if name == "summary":
        d, p = data["deliveries"], data["portions"]
        counts = ", ".join(f"{say(f'status.{s}')} {n}" for s, n in d.items() if s != "expected" and n)
        # The planned deliveries and those where none was planned (a closed school that got meals): each is counted
        # in its statuses.
        total = d["expected"] + d.get("unplanned", 0)
        return "\n".join([
            say("summary_on", date=date),
            f"  {say.num(total)} {say.count('deliveries', total)}: {counts or '–'}",
            f"  {say('portions_line', received=say.num(p['received']), expected=say.num(p['expected']))}",
            f"  {say.num(data['total_scans_today'])} {say.count('scans', data['total_scans_today'])}, "
            f"{say.num(data['devices_today'])} {say.count('devices', data['devices_today'])}",
            f"  {say('violations')}: {say.num(data['food_safety_violations'])}; {say('alerts')}: "
            f"{say.num(data['alerts'])}"])
    if name == "deliveries":
        if not data["kitchens"]:
            return say("no_deliveries", date=date)
        lines = [say("deliveries_on", date=date) + ": " + ", ".join(
            f"{say(f'status.{s}')} {n}" for s, n in data["totals"].items() if n)]
        for kitchen in data["kitchens"]:
            lines.append("")
            lines.append(say.kitchen(kitchen["kitchen"]))
            rows = []
            # Each delivery's times at its school, in the school's zone (a WIT school's 09:00 is not 07:00 WIB).
            sites = [d["school"] for d in kitchen["schools"]]
            z = say.zoned(sites)
            for d in sorted(kitchen["schools"], key=lambda d: d["school"]):
                # Left and arrived in columns of their own: a truck still on the road has left and not arrived,
                # and a time under 'Arrived' is always an arrival.
                rows.append([say.school(d["school"]), say.status(d) + (
                    f" +{say.minutes(d['late_s'])}" if d["late_s"] else ""),
                    say.clock(d.get("departed_at"), d["school"], zoned=z), say.arrival(d, zoned=z),
                    say.clock(d["deadline_at"], d["school"], zoned=z) if d["expected"] or d["status"] != "unplanned"
                    else "–", f"{say.num(d['received_portions'])}/{say.num(d['expected'])}",
                    say.num(d["shortfall"]) if d["shortfall"] else ""])
            lines += ["  " + x for x in _table([say("school"), say("status"), say.at("departed", sites),
                                                say.at("arrived", sites), say.at("due", sites),
                                                f"{say('portions')} {say('received')}/{say('expected')}",
                                                say("short_by")], rows)]
        return "\n".join(lines)
    if name in ("late", "short", "missing"):
        rows_in = data[name]
        if not rows_in:
            return say("none", date=date)
        sites = [d["school"] for d in rows_in]  # each row's times at its school, in the school's zone
        z = say.zoned(sites)
        if name == "late":
            head = [say("school"), say("kitchen"), say.at("arrived", sites), say.at("due", sites), say("late_by"),
                    say("portions")]
            rows = [[say.school(d["school"]), say.kitchen(d["kitchen"]), say.arrival(d, zoned=z),
                     say.clock(d["deadline_at"], d["school"], zoned=z), say.minutes(d["late_s"]),
                     f"{say.num(d['received_portions'])}/{say.num(d['expected'])}"] for d in rows_in]
        elif name == "short":
            head = [say("school"), say("kitchen"), say("received"), say("expected"), say("short_by"),
                    say.at("arrived", sites)]
            rows = [[say.school(d["school"]), say.kitchen(d["kitchen"]), say.num(d["received_portions"]),
                     say.num(d["expected"]), say.num(d["shortfall"]), say.arrival(d, zoned=z)]
                    for d in rows_in]
        else:
            head = [say("school"), say("kitchen"), say("status"), say.at("left", sites), say.at("due", sites),
                    say("expected")]
            rows = [[say.school(d["school"]), say.kitchen(d["kitchen"]), say.status(d),
                     say.clock(d["departed_at"], d["school"], zoned=z), say.clock(d["deadline_at"], d["school"], zoned=z),
                     say.num(d["expected"])] for d in rows_in]
        return "\n".join([f"{say(f'heading.{name}')} — {date}", *_table(head, rows)])
    if name == "lost":
        if not data["lost"]:
            return say("none", date=date)
        rows = [[r["tag"], say.school(r["school"]), say(f"finding.{r['reason']}")] for r in data["lost"]]
        return "\n".join([f"{say('heading.lost')} — {date}",
                          *_table([say("container"), say("school"), say("reason")], rows)])
    if name == "violations":
        deliveries = _by_school([s for k in (extra or {}).get("kitchens", []) for s in k["schools"]])
        units = {f"{c['kitchen']}/{c['item']}": c["unit"] for c in (extra or {}).get("on_hand", [])}
        lines = [f"{say('violations')} — {date}"]
        vrows = [[say.school(v["school"]), say(f"finding.{v['rule']}"),
                  say.finding({"code": v["rule"], "subject": v["school"], "measured": v["measured"],
                               "limit": v["limit"], "containers": v["containers"], "part": v.get("part"),
                               "detail": " still open" if v["open"] else ""}, deliveries),
                  ", ".join(v["containers"][:3])] for v in data["violations"]]
        lines += _table([say("school"), say("kind"), say("what"), say("container")], vrows) if vrows else [
            "  " + say("none", date=date)]
        lines += ["", f"{say('findings')} — {date}"]
        order = {"alert": 0, "warning": 1, "info": 2}
        frows = []
        for group in _fold(sorted(data["findings"], key=lambda f: (order.get(f["severity"], 3), f["code"],
                                                                    f["subject"]))):
            f = max(group, key=lambda f: abs(f.get("measured") or 0))
            subjects = [say.subject(g["code"], g["subject"]) for g in group]
            about = subjects[0] if len(group) == 1 else f"{len(group)}×: {subjects[0]}, … (+{len(group) - 1})"
            frows.append([say(f"severity.{f['severity']}"), say(f"finding.{f['code']}"), about,
                          say.finding(f, deliveries, units)])
        lines += _table(["!", say("kind"), say("subject"), say("what")], frows) if frows else [
            "  " + say("none", date=date)]
        return "\n".join(lines)
    if name == "stock":
        rows = [[say.kitchen(c["kitchen"]), c["item"], say.quantity(c["on_hand"], c["unit"]),
                 ", ".join(say(f"flag.{f}") for f in c["flags"])] for c in data["on_hand"]]
        # Without a day the stock is every movement recorded, said with no day; with one (--date), the book as it
        # stood at the end of that day, which the heading names.
        table = _table([say("kitchen"), say("item"), say("on_hand"), say("flags")], rows)
        if data.get("date"):
            return "\n".join([say("stock_on", date=date), *table]) if rows else say("no_stock_on", date=date)
        return "\n".join(table) if rows else say("no_stock")
    if name == "container":
        lines = [say("history", tag=data["tag"])]
        for tl in data["timelines"]:
            lines.append(f"  {say.date(tl['date'])} → {say.school(tl['school'])}")
            if tl.get("closes"):  # a return days late whose trip's taps the hub no longer holds
                lines.append(f"  {say('closes_trip', date=say.date(tl['closes']))}")
            # Each step at its own site's time: the kitchen's and the school's zones may differ.
            sites = [s["site"] for s in tl["steps"]]
            z = say.zoned(sites)
            rows = [[say.clock_on(s["time"], tl["date"], s["site"], zoned=z), say(f"event.{s['event']}"),
                     say.school(s["site"]) if s["site"] in say.names.get("schools", {}) else say.kitchen(s["site"]),
                     say.device(s["device"]), say.celsius(s["temp_cc"])] for s in tl["steps"]]
            lines += ["    " + x for x in _table([say.at("time", sites), say("step"), say("where"), say("device"),
                                                  say("temp")], rows)]
        return "\n".join(lines)
    return json.dumps(data, indent=2, ensure_ascii=False)


def parser() -> argparse.ArgumentParser:
    # The common options are accepted before or after the query: each subcommand repeats them with no default
    # of its own, so a value given after the query wins over the top-level default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--hub-url", default=argparse.SUPPRESS, help=HUB_URL_HELP)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the hub's JSON as it is")
    common.add_argument("--lang", choices=LANGUAGES, default=argparse.SUPPRESS,
                        help="Indonesian or English (default: from the locale)")
    common.add_argument("--date", default=argparse.SUPPRESS, help="YYYY-MM-DD (default: today at the hub)")
    p = argparse.ArgumentParser(prog="jejak mbg", description=__doc__, epilog=EXAMPLES, parents=[common],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="query", required=True, metavar="QUERY")
    for name, (_, text) in QUERIES.items():
        sub.add_parser(name, help=text, description=text, parents=[common], epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    container = sub.add_parser("container", help="one container's history, step by step", parents=[common])
    container.add_argument("tag", help="the container's NFC tag id")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    hub_url = getattr(args, "hub_url", None) or default_hub_url()
    lang = getattr(args, "lang", None) or locale_lang()
    as_json = getattr(args, "json", False)
    date = getattr(args, "date", None) or ""
    try:
        if args.query == "container":
            data = fetch(hub_url, f"/api/mbg/containers/{urllib.parse.quote(args.tag)}")
        else:
            data = fetch(hub_url, QUERIES[args.query][0], {"date": date})
        if as_json or args.query == "epcis":
            print(json.dumps(data, indent=2, ensure_ascii=False))
            return 0
        names = fetch(hub_url, "/api/mbg/names")
        say = Speaker(lang=lang, names=names, words=load_words(lang))
        if not names.get("planned") and args.query not in ("container", "stock"):
            print(say("no_plan"))
            print(say("no_plan_hint"), file=sys.stderr)
            return 0
        extra = None
        if args.query == "violations":
            extra = fetch(hub_url, "/api/mbg/deliveries", {"date": data.get("date", "")})
            if any(f["code"].startswith("stock_") for f in data["findings"]):
                extra["on_hand"] = fetch(hub_url, "/api/mbg/stock")["on_hand"]  # the units stock findings speak in
        if names.get("counting"):
            print(say("counting", n=say.num(names["counting"])))
        print(render(args.query, data, say, extra))
    except CodedError as exc:
        return stop(spoken(exc, lang, tag=getattr(args, "tag", None), date=date), verbose=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
