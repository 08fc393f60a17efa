"""Seed 1's gateway API on the edge (`POST /api/log_scan`) and the phone check-in page that posts to it.

Seed 1 (an Android app and a Flask gateway on a Raspberry Pi) posts one NFC scan as JSON:

    POST /api/log_scan  {"nfc_tag_id": "NFC_TAG_ALPHA", "status_scan": "makanan_keluar"}
    201 {"message": "Scan berhasil dicatat di gateway lokal"}        (seed 1's own answer, plus id and seq)
    400 {"error": "Data tidak lengkap. ...", "code": "LEGACY_INPUT"}    (seed 1's error shape, plus a stable code)

A scan may also name the staff card of whoever scanned (`"staff": "a1b2c3d4"`): a checkpoint whose
`checkpoint.staff` lists its staff cards takes no scan without one of them, as its reader takes no tap before a
staff card's. Here every accepted scan becomes a signed record of this edge (kind "scan", body source "legacy-http", or
"checkin-page" for the page below), appended durably before the 201. Input is checked as strictly as the
CoAP path checks its observations: unknown keys, unknown statuses and malformed tag ids are refused with
400 and nothing is stored.

The check-in page (`GET /checkin`) is one self-contained HTML file (no CDN): Web NFC where the browser has
it, a typed or scanner-wedge code otherwise, and a queue on the phone for the moments the edge is out of
reach (sent again when the connection returns). Every scan carries the edge's pairing secret
(edge/pairing.py): the page keeps the one its QR code brought, and a scan refused for pairing (401) or rate
(429) stays queued on the phone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from coap_server.httpd import read_at_most
from coap_server.params import read_json
from ledger import LedgerError
from ledger.errors import CodedError
from ledger.legacy import parse_log_scan, scan_body

log = logging.getLogger("jejak.edge.legacy")

MAX_BODY_BYTES = 4096
SOURCE_HEADER = "X-Jejak-Source"
SOURCES = {"legacy-http", "checkin-page"}


def mount(app: Any, daemon: Any) -> None:
    """Add `POST /api/log_scan`, `GET /checkin` and the page's service worker to an aiohttp app.

    `daemon` is the running EdgeDaemon: its `submit` appends durably, its `config` names site and role.
    """
    from aiohttp import web

    site = daemon.config.site
    role = daemon.config.checkpoint.role
    submit: Callable[[Sequence[tuple[str, dict[str, Any]]]], Awaitable[Sequence[Any]]] = daemon.submit

    def error(message: str, code: str, status: int = 400) -> web.Response:
        """Seed 1's error shape, with the stable code of docs/ERRORS.md beside the message."""
        return web.json_response({"error": message, "code": code}, status=status)

    def refusal(exc: CodedError, message: str | None = None) -> web.Response:
        """A typed error in seed 1's shape, with the status (and retry time) its class declares."""
        headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
        return web.json_response({"error": message or exc.message, "code": exc.code}, status=exc.http,
                                 headers=headers)

    async def log_scan(request: web.Request) -> web.Response:
        """Seed 1's scan logging: one scan in, one signed record of this edge out."""
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return error(f"body larger than {MAX_BODY_BYTES} bytes", "TOO_LARGE", 413)
        raw = await read_at_most(request, MAX_BODY_BYTES)
        if len(raw) > MAX_BODY_BYTES:
            return error(f"body larger than {MAX_BODY_BYTES} bytes", "TOO_LARGE", 413)
        if request.content_type != "application/json":
            return error(f"Content-Type harus application/json / must be application/json, got "
                         f"{request.content_type!r}", "LEGACY_INPUT")
        try:
            data = read_json(raw, max_bytes=MAX_BODY_BYTES)
        except CodedError as exc:
            return error(f"JSON tidak valid / not valid JSON: {exc.message}", exc.code, exc.http)
        source = request.headers.get(SOURCE_HEADER, "legacy-http")
        if source not in SOURCES:
            return error(f"{SOURCE_HEADER}: expected one of {sorted(SOURCES)}, got {source[:40]!r}", "LEGACY_INPUT")
        try:
            tag, event, staff = parse_log_scan(data)
            body = scan_body(tag=tag, event=event, site=site, role=role, source=source, staff=staff)
        except LedgerError as exc:  # LegacyInputError among them
            return refusal(exc)
        try:
            (stored,) = await submit([("scan", body)])
        except LedgerError as exc:
            return refusal(exc)
        except CodedError as exc:  # shutting down, store busy or full: the scan was not recorded
            log.warning("legacy scan not recorded: %s", exc)
            return refusal(exc, f"scan tidak tercatat / not recorded: {exc.message}")
        except Exception as exc:
            log.warning("legacy scan not recorded: %s", exc)
            return error(f"scan tidak tercatat / not recorded: {exc}", "EDGE_ERROR", 503)
        return web.json_response({"message": "Scan berhasil dicatat di gateway lokal", "id": stored.id.hex(),
                                  "seq": stored.seq, "event": event, "duplicate": stored.duplicate},
                                 status=201)

    async def checkin(_: web.Request) -> web.Response:
        """The phone check-in page"""
        return web.Response(text=CHECKIN_HTML.replace("__SITE__", _html(site)), content_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    async def worker(_: web.Request) -> web.Response:
        return web.Response(text=SERVICE_WORKER, content_type="application/javascript",
                            headers={"Service-Worker-Allowed": "/checkin", "Cache-Control": "no-cache"})

    app.router.add_post("/api/log_scan", log_scan)
    app.router.add_get("/checkin", checkin)
    app.router.add_get("/checkin/sw.js", worker)


def _html(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))


# Service workers run only in a secure context (https, or localhost); on a plain-http LAN the page still
# works, and its own queue keeps scans that could not be sent.
SERVICE_WORKER = """
const CACHE = 'jejak-checkin-v1';
self.addEventListener('install', e => { e.waitUntil(caches.open(CACHE).then(c => c.add('/checkin'))); });
self.addEventListener('fetch', e => {
  const url = new URL(e.request.url);
  if (e.request.method === 'GET' && url.pathname === '/checkin') {
    e.respondWith(fetch(e.request).then(r => { const copy = r.clone();
      caches.open(CACHE).then(c => c.put('/checkin', copy)); return r; })
      .catch(() => caches.match('/checkin')));
  }
});
"""

CHECKIN_HTML = """<!doctype html>
<html lang="id"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Jejak check-in</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;padding:1rem;background:#f5f5f0;color:#222;max-width:32rem}
h1{font-size:1.3rem;margin:.2rem 0}.site{color:#555;margin-bottom:1rem}
label{display:block;margin:.8rem 0 .3rem;font-weight:600}
input,select,button{font-size:1.2rem;width:100%;box-sizing:border-box;padding:.7rem;border-radius:.4rem;
border:1px solid #999}
button{background:#1d6b45;color:#fff;border:0;margin-top:1rem}button.nfc{background:#24527a}
#feedback{margin-top:1rem;padding:1rem;border-radius:.4rem;font-size:1.1rem;display:none}
#feedback.ok{display:block;background:#d8f0df;color:#0d4a25}
#feedback.err{display:block;background:#f7d9d6;color:#7a1b12}
#feedback.wait{display:block;background:#fff2cc;color:#5c4400}
#queue{margin-top:.6rem;color:#5c4400}
</style></head><body>
<h1>Jejak &middot; check-in MBG</h1>
<div class="site">Lokasi / site: <b id="site">__SITE__</b></div>
<div id="pairing" hidden>
<label for="pair">Kode pasangan / pairing code (QR <code>jejak edge pair</code>)</label>
<input id="pair" autocomplete="off"><button type="button" id="pairsave">Simpan / Save</button>
</div>
<form id="form" autocomplete="off">
<label for="staff">Kartu petugas / staff card</label>
<input id="staff" name="staff" maxlength="128" pattern="[A-Za-z0-9][A-Za-z0-9_.:\\-]{0,127}"
 placeholder="a1b2c3d4">
<button type="button" class="nfc" id="nfcstaff" hidden>Tempelkan kartu petugas / Tap staff card</button>
<button type="button" class="nfc" id="nfc" hidden>Tempelkan kartu NFC / Tap NFC tag</button>
<label for="tag">Kode ompreng / container code</label>
<input id="tag" name="nfc_tag_id" required maxlength="128" pattern="[A-Za-z0-9][A-Za-z0-9_.:\\-]{0,127}"
 placeholder="NFC_TAG_ALPHA" autofocus>
<label for="status">Status</label>
<select id="status" name="status_scan">
<option value="makanan_keluar">Makanan keluar (dapur)</option>
<option value="makanan_tiba">Makanan tiba (sekolah)</option>
<option value="makanan_diterima">Makanan diterima (sekolah)</option>
<option value="makanan_disajikan">Makanan disajikan</option>
<option value="ompreng_kembali">Ompreng kembali</option>
<option value="makanan_dimasak">Makanan dimasak</option>
<option value="makanan_dikemas">Makanan dikemas</option>
</select>
<button type="submit" id="send">Catat / Record</button>
</form>
<div id="feedback" role="status" aria-live="polite"></div>
<div id="queue"></div>
<script>
(function () {
  const KEY = 'jejak-checkin-queue';
  const form = document.getElementById('form'), tag = document.getElementById('tag');
  const status = document.getElementById('status'), fb = document.getElementById('feedback');
  const qdiv = document.getElementById('queue');
  function show(kind, text) { fb.className = kind; fb.textContent = text; }
  function queue() { try { return JSON.parse(localStorage.getItem(KEY) || '[]'); } catch (e) { return []; } }
  function save(q) { localStorage.setItem(KEY, JSON.stringify(q));
    qdiv.textContent = q.length ? q.length + ' scan menunggu dikirim / waiting to be sent' : ''; }
  // The staff card stays on the phone: each scan names it, as a tap at the reader follows a staff card's tap.
  const STAFF = 'jejak-checkin-staff', staffInput = document.getElementById('staff');
  staffInput.value = localStorage.getItem(STAFF) || '';
  staffInput.addEventListener('change', function () { localStorage.setItem(STAFF, staffInput.value.trim()); });
  function item(code) {
    const it = {nfc_tag_id: code, status_scan: status.value}, who = staffInput.value.trim();
    if (who) { it.staff = who; }
    return it;
  }
  const PAIR = 'jejak-checkin-pair';
  const pairing = document.getElementById('pairing'), pairInput = document.getElementById('pair');
  // The QR code from `jejak edge pair` opens /checkin#pair=<secret>: the fragment never reaches a server.
  const fromQr = new URLSearchParams(location.hash.slice(1)).get('pair');
  if (fromQr) { localStorage.setItem(PAIR, fromQr); history.replaceState(null, '', location.pathname); }
  function secret() { return localStorage.getItem(PAIR) || ''; }
  pairing.hidden = !!secret();
  document.getElementById('pairsave').addEventListener('click', function () {
    const v = pairInput.value.trim(); if (v) { localStorage.setItem(PAIR, v); pairing.hidden = true; flush(); }
  });
  async function post(item) {
    const r = await fetch('/api/log_scan', {method: 'POST',
      headers: {'Content-Type': 'application/json', 'X-Jejak-Source': 'checkin-page',
                'Authorization': 'Bearer ' + secret()},
      body: JSON.stringify(item)});
    let body = {}; try { body = await r.json(); } catch (e) {}
    return {status: r.status, body: body};
  }
  async function send(item) {
    try {
      const res = await post(item);
      if (res.status === 201) {
        show('ok', 'Tercatat / Recorded: ' + item.nfc_tag_id + ' \\u2192 ' + res.body.event +
             ' (#' + res.body.seq + ')');
        return true;
      }
      if (res.status === 401) { pairing.hidden = false; }
      if (res.status >= 500 || res.status === 401 || res.status === 429) {
        throw new Error(res.body.error || ('HTTP ' + res.status));  // kept on the phone, sent again later
      }
      show('err', 'Ditolak / Refused: ' + (res.body.error || ('HTTP ' + res.status)));
      return true;  // refused input is not retried: it would be refused again
    } catch (e) {
      const q = queue(); q.push(item); save(q);
      show('wait', 'Belum terkirim, disimpan di ponsel / Not sent yet, kept on this phone: ' + item.nfc_tag_id);
      return false;
    }
  }
  async function flush() {
    let q = queue();
    while (q.length) {
      const item = q[0];
      try { const res = await post(item);
        if (res.status >= 500 || res.status === 401 || res.status === 429) break; } catch (e) { break; }
      q = queue(); q.shift(); save(q);
    }
  }
  form.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    const code = tag.value.trim();
    if (!code) { show('err', 'Kode kosong / Code is empty'); return; }
    await send(item(code));
    tag.value = ''; tag.focus();
  });
  if ('NDEFReader' in window) {
    const btn = document.getElementById('nfc'), staffBtn = document.getElementById('nfcstaff');
    btn.hidden = false; staffBtn.hidden = false;
    let forStaff = false;  // the next card read is the staff card
    staffBtn.addEventListener('click', function () { forStaff = true; btn.click(); });
    btn.addEventListener('click', async function () {
      try {
        const reader = new NDEFReader(); await reader.scan();
        show('wait', 'Tempelkan kartu / Tap the tag now');
        reader.onreading = function (e) {
          const code = (e.serialNumber || '').replace(/:/g, '');
          if (!code) { return; }
          if (forStaff) {
            forStaff = false; staffInput.value = code.toLowerCase();
            localStorage.setItem(STAFF, staffInput.value); show('ok', 'Petugas / Staff: ' + staffInput.value);
          } else { send(item(code.toUpperCase())); }
        };
      } catch (e) { show('err', 'NFC: ' + e.message); }
    });
  }
  if ('serviceWorker' in navigator && window.isSecureContext) {
    navigator.serviceWorker.register('/checkin/sw.js', {scope: '/checkin'}).catch(function () {});
  }
  window.addEventListener('online', flush);
  setInterval(flush, 15000);
  save(queue()); flush();
})();
</script></body></html>
"""
