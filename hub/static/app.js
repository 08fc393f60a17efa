// Jejak dashboard: a single page with hash routes, plain JS, no build step and no external assets.
"use strict";

// Indonesia's three time zones by their offset from UTC, named as `jejak mbg` names them (tools/mbg.py ZONES).
const WIB = 7 * 3600;
const ZONES = { [WIB]: "WIB", [8 * 3600]: "WITA", [9 * 3600]: "WIT" };
// Every visible word in both languages. Statuses, findings and container steps come from words.json, which
// `jejak mbg` speaks too; t() records any key the current language lacks (window.__i18nMissing, checked by
// the browser tests), so an untranslated string fails a test instead of leaking into a page.
const I18N = {
  en: {
    "nav.chain": "Chain health", "nav.mbg": "MBG", "nav.markets": "Markets", "nav.verify": "Verify a bundle", "live.on": "live", "live.off": "offline",
    "feed.title": "Live", "chain.title": "Chain health", "records": "Records in log", "devices": "Devices",
    "forks": "Forks", "refused": "Refused records", "duplicates": "Duplicates", "checkpoint": "Latest checkpoint",
    "tree_size": "tree size", "root": "root", "signed": "signed", "download": "Download audit bundle",
    "device": "Device", "site": "Site", "role": "Role", "status": "Status", "restore": "damaged, awaiting restore", "counting": "counting",
    "signing_stopped": "Signing stopped: a device holds a checkpoint of this hub that its store does not hold, so the store is an older copy. Records are still taken; no checkpoint is signed until the operator acts (docs/DEPLOY.md, Backups).",
    "figures_counting": "Counting the records held before the upgrade into these figures: {n} to go. Until then a device marked \u201ccounting\u201d shows its records counted so far.", "length": "Length", "head": "Head",
    "last_seen": "Last seen", "sync_lag": "Sync lag", "no_forks": "No forks: every device shows one history.",
    "fork_seq": "Seq", "mbg.title": "MBG deliveries", "on_time": "On time", "late": "Late", "short": "Short",
    "missing": "Missing", "portions": "Portions received / planned",
    "school": "School", "expected": "Planned", "received": "Received", "shortfall": "Short by", "arrived": "Arrived",
    "deadline": "Due", "late_by": "Late by", "containers": "Container history", "container": "Container",
    "violations": "Food safety", "rule": "Rule", "measured": "Measured", "limit": "Limit",
    "source": "Source", "findings": "Findings", "no_violations": "No food-safety violation today.",
    "stock": "Stock on hand", "item": "Item", "on_hand": "On hand", "flags": "Flags", "stock_card": "Stock card",
    "movement": "Movement", "in": "In", "out": "Out", "balance": "Balance", "time": "Time", "kitchen": "Kitchen",
    "markets.title": "Market prices", "commodity": "Commodity", "market": "Market", "all_markets": "All markets",
    "prices": "Prices (Rp)", "quarantined": "Prices held for checking", "reasons": "Why", "price": "Price",
    "impact": "Impact score", "dominant": "main cause", "weights": "causes", "forecast": "7-day forecast",
    "map": "Price early warning by market", "alerts": "Alerts", "no_alerts": "No alerts yet.",
    "alps": "Early warning", "band": "Level", "observations": "Reports", "scans_today": "Taps today",
    "select": "Select a row to see its history.", "none": "Nothing yet.", "subject": "About",
    "detail": "What", "kind": "Finding", "day": "day", "days": "days", "language": "ID: switch the language to Indonesian",
    "switch_to": "ID", "hub_time": "Hub time (WIB)", "page": "Page {n} of {of}", "prev": "Previous", "next": "Next",
    "data_notices": "{n} data-quality notices (not urgent)", "more_alerts": "{n} more", "held_prices":
    "{n} prices held for checking", "held": "held for checking", "checkpoint_event": "checkpoint",
    "forecast_note": "Line: expected price. Shaded: the range 95 of 100 days should fall in.",
    "confidence": "Confidence", "confidence.low": "low", "confidence.medium": "medium", "confidence.high": "high",
    "map_hint": "Zoom with + and −, drag to move; a number is a group of markets, select it to zoom in.",
    "group_of": "{n} markets", "main": "Dashboard", "timeline_of": "History of container", "stage": "Stage",
    "derived": "(from the kitchen's or school's tap)", "source_sop": "kitchen SOP", "source_who": "WHO Five Keys",
    "kind.scan": "tap", "kind.price": "price", "kind.stock": "stock", "kind.reading": "sensor reading",
    "kind.note": "note", "kind.key": "key", "movement.receive": "received", "movement.use": "used",
    "movement.waste": "wasted", "movement.count": "counted", "group.food": "Food safety", "group.delivery": "Deliveries",
    "group.container": "Containers", "group.stock": "Stock", "group.data": "Data quality",
    "reason.hampel": "far from the usual price of the last days", "reason.modified_z": "far from the middle price",
    "reason.zscore": "far from the average price (shown only)", "reason.iqr": "outside the usual price range (shown only)",
    "reason.jump": "sudden jump from the last price", "reason.reporters": "differs from other reporters here",
    "reason.nearby": "moved unlike nearby markets", "reason.drift": "crept away from nearby markets over two weeks",
    "reason.ceiling": "above the price ceiling (HET)", "reason.plausible": "far from any real price of this item",
    "reason.stale": "reported long after it was seen", "reason.future": "device clock ahead of the hub",
    "reason.other": "other check",
    "factor.weather": "weather", "factor.crowd": "crowds", "factor.season": "season and holidays",
    "factor.supply": "supply", "factor.mbg": "MBG kitchens' buying", "factor.notes": "reporters' notes",
    "factor.macro": "inflation, fuel, exchange rate", "factor.unexplained": "unexplained",
    "band.normal": "normal", "band.stress": "watch", "band.alert": "alert", "band.crisis": "crisis",
    "band.none": "no band yet (too short a price history)",
    "regions": "Regional hubs", "regions_troubled": "regions not answering or refused", "region": "Region",
    "region.mode": "How", "region.mode.checkpoints": "followed by its checkpoints", "region.mode.records": "pulled record by record",
    "region.followed": "followed", "region.pulled": "pulled", "region.split": "split view", "region.refused": "refused",
    "region.unreachable": "not answering", "region.problem": "Why", "region.since": "since {since}, {rounds} rounds",
    "region.detail": "the hub's message",
    "region.why.UNREACHABLE": "no answer: check that the regional hub runs, and its address in upstream",
    "region.why.REGION_UNPROTECTED": "answered outside the OSCORE context of the key pinned here: a mistyped key, a new key, or this hub missing from its peer_hubs",
    "region.why.INVALID_CHECKPOINT": "a checkpoint that does not verify with the key pinned here",
    "region.why.INVALID_PROOF": "a proof that does not hold: nothing it sent is taken",
    "region.why.SPLIT_VIEW": "caught signing two views of its log: followed again only when an operator resumes it",
    "region.why.HUB_REFUSED": "refused this hub's request",
    "stale": "stale data", "held_series": "reports held for review",
    "alps_alert": "price alert", "alps_crisis": "price crisis", "alps_stress": "price watch",
    "dev.active": "active", "dev.pending": "waiting for approval", "dev.forked": "two histories", "dev.revoked": "revoked",
    "role.kitchen": "kitchen", "role.kitchen_exit": "kitchen exit", "role.school_gate": "school gate",
    "role.return": "container return", "role.market": "market", "role.hub-attestor": "hub", "role.phone": "phone",
    "role.market_stall": "market stall",
  },
  id: {
    "nav.chain": "Kesehatan rantai", "nav.mbg": "MBG", "nav.markets": "Pasar", "nav.verify": "Periksa bundel", "live.on": "langsung",
    "live.off": "terputus", "feed.title": "Langsung", "chain.title": "Kesehatan rantai", "records": "Catatan di log",
    "devices": "Perangkat", "forks": "Percabangan", "refused": "Catatan ditolak", "duplicates": "Duplikat",
    "checkpoint": "Checkpoint terakhir", "tree_size": "ukuran pohon", "root": "akar", "signed": "ditandatangani",
    "download": "Unduh bundel audit", "device": "Perangkat", "site": "Lokasi", "role": "Peran", "status": "Status",
    "restore": "rusak, menunggu pemulihan", "counting": "sedang dihitung",
    "signing_stopped": "Penandatanganan berhenti: sebuah perangkat memegang checkpoint hub ini yang tidak ada di penyimpanannya, jadi penyimpanan ini salinan lama. Catatan tetap diterima; tidak ada checkpoint yang ditandatangani sampai operator bertindak (docs/DEPLOY.md, Backups).",
    "figures_counting": "Catatan yang tersimpan sebelum pembaruan sedang dihitung ke angka-angka ini: {n} lagi. Sampai selesai, perangkat bertanda \u201csedang dihitung\u201d menunjukkan catatannya yang sudah dihitung.", "length": "Panjang", "head": "Ujung", "last_seen": "Terakhir terlihat", "sync_lag": "Jeda sinkron",
    "no_forks": "Tidak ada percabangan: setiap perangkat menunjukkan satu riwayat.", "fork_seq": "Urutan",
    "mbg.title": "Pengiriman MBG", "on_time": "Tepat waktu", "late": "Terlambat", "short": "Kurang",
    "missing": "Tidak datang", "portions": "Porsi diterima / direncanakan", "school": "Sekolah", "expected": "Rencana",
    "received": "Diterima", "shortfall": "Kurang", "arrived": "Tiba", "deadline": "Batas", "late_by": "Terlambat",
    "containers": "Riwayat ompreng", "container": "Ompreng", "violations": "Keamanan pangan", "rule": "Aturan",
    "measured": "Terukur", "limit": "Batas", "source": "Sumber", "findings": "Temuan",
    "no_violations": "Tidak ada pelanggaran keamanan pangan hari ini.",
    "stock": "Stok bahan", "item": "Bahan", "on_hand": "Stok", "flags": "Tanda", "stock_card": "Kartu stok",
    "movement": "Mutasi", "in": "Masuk", "out": "Keluar", "balance": "Saldo", "time": "Waktu", "kitchen": "Dapur",
    "markets.title": "Harga pasar", "commodity": "Komoditas", "market": "Pasar", "all_markets": "Semua pasar",
    "prices": "Harga (Rp)", "quarantined": "Harga yang ditahan untuk diperiksa", "reasons": "Alasan", "price": "Harga",
    "impact": "Skor dampak", "dominant": "penyebab utama", "weights": "penyebab", "forecast": "Prakiraan 7 hari",
    "map": "Peringatan dini harga per pasar", "alerts": "Peringatan", "no_alerts": "Belum ada peringatan.",
    "alps": "Peringatan dini", "band": "Tingkat", "observations": "Laporan", "scans_today": "Tap hari ini",
    "select": "Pilih baris untuk melihat riwayatnya.", "none": "Belum ada.", "subject": "Tentang",
    "detail": "Keterangan", "kind": "Temuan", "day": "hari", "days": "hari", "language": "EN: ganti bahasa ke bahasa Inggris",
    "switch_to": "EN", "hub_time": "Waktu hub (WIB)", "page": "Halaman {n} dari {of}", "prev": "Sebelumnya",
    "next": "Berikutnya", "data_notices": "{n} catatan mutu data (tidak mendesak)", "more_alerts": "{n} lagi",
    "held_prices": "{n} harga ditahan untuk diperiksa", "held": "ditahan untuk diperiksa",
    "checkpoint_event": "checkpoint",
    "forecast_note": "Garis: perkiraan harga. Arsiran: rentang tempat 95 dari 100 hari seharusnya berada.",
    "confidence": "Keyakinan", "confidence.low": "rendah", "confidence.medium": "sedang", "confidence.high": "tinggi",
    "map_hint": "Perbesar dengan + dan −, geser untuk berpindah; angka adalah kelompok pasar, pilih untuk memperbesar.",
    "group_of": "{n} pasar", "main": "Dasbor", "timeline_of": "Riwayat ompreng", "stage": "Tahap",
    "derived": "(dari tap dapur atau sekolah)", "source_sop": "SOP dapur", "source_who": "WHO Lima Kunci",
    "kind.scan": "tap", "kind.price": "harga", "kind.stock": "stok", "kind.reading": "bacaan sensor",
    "kind.note": "catatan", "kind.key": "kunci", "movement.receive": "masuk", "movement.use": "dipakai",
    "movement.waste": "terbuang", "movement.count": "dihitung", "group.food": "Keamanan pangan", "group.delivery": "Pengiriman",
    "group.container": "Ompreng", "group.stock": "Stok", "group.data": "Mutu data",
    "reason.hampel": "jauh dari harga biasa beberapa hari terakhir", "reason.modified_z": "jauh dari harga tengah",
    "reason.zscore": "jauh dari harga rata-rata (hanya info)", "reason.iqr": "di luar rentang harga biasa (hanya info)",
    "reason.jump": "lonjakan mendadak dari harga terakhir", "reason.reporters": "berbeda dari pelapor lain di pasar ini",
    "reason.nearby": "bergerak tidak seperti pasar terdekat", "reason.drift": "perlahan menjauh dari pasar terdekat selama dua minggu",
    "reason.ceiling": "di atas harga eceran tertinggi (HET)", "reason.plausible": "jauh dari harga wajar barang ini",
    "reason.stale": "dilaporkan lama setelah dilihat", "reason.future": "jam perangkat lebih cepat dari hub",
    "reason.other": "pemeriksaan lain",
    "factor.weather": "cuaca", "factor.crowd": "keramaian", "factor.season": "musim dan hari raya",
    "factor.supply": "pasokan", "factor.mbg": "belanja dapur MBG", "factor.notes": "catatan pelapor",
    "factor.macro": "inflasi, BBM, kurs", "factor.unexplained": "tidak terjelaskan",
    "band.normal": "normal", "band.stress": "waspada", "band.alert": "siaga", "band.crisis": "krisis",
    "band.none": "belum ada status (riwayat harga belum cukup panjang)",
    "regions": "Hub regional", "regions_troubled": "region tidak menjawab atau ditolak", "region": "Region",
    "region.mode": "Cara", "region.mode.checkpoints": "diikuti lewat checkpoint-nya", "region.mode.records": "ditarik per rekaman",
    "region.followed": "diikuti", "region.pulled": "ditarik", "region.split": "tampilan ganda", "region.refused": "ditolak",
    "region.unreachable": "tidak menjawab", "region.problem": "Sebab", "region.since": "sejak {since}, {rounds} putaran",
    "region.detail": "pesan hub",
    "region.why.UNREACHABLE": "tidak ada jawaban: periksa bahwa hub regional berjalan, dan alamatnya di upstream",
    "region.why.REGION_UNPROTECTED": "menjawab di luar konteks OSCORE kunci yang dipasang di sini: kunci salah ketik, kunci baru, atau hub ini tidak ada di peer_hubs-nya",
    "region.why.INVALID_CHECKPOINT": "checkpoint yang tidak sah dengan kunci yang dipasang di sini",
    "region.why.INVALID_PROOF": "bukti yang tidak berlaku: tidak ada kirimannya yang diterima",
    "region.why.SPLIT_VIEW": "tertangkap menandatangani dua versi log-nya: diikuti lagi hanya setelah operator melanjutkannya",
    "region.why.HUB_REFUSED": "menolak permintaan hub ini",
    "stale": "data lama", "held_series": "laporan ditahan, menunggu keputusan",
    "alps_alert": "harga siaga", "alps_crisis": "harga krisis", "alps_stress": "harga waspada",
    "dev.active": "aktif", "dev.pending": "menunggu persetujuan", "dev.forked": "dua riwayat", "dev.revoked": "dicabut",
    "role.kitchen": "dapur", "role.kitchen_exit": "pintu keluar dapur", "role.school_gate": "gerbang sekolah",
    "role.return": "pengembalian ompreng", "role.market": "pasar", "role.hub-attestor": "hub", "role.phone": "ponsel",
    "role.market_stall": "lapak pasar",
  },
};
const STATE = { lang: localStorage.getItem("jejak.lang") || "id", route: "chain", data: {}, commodity: null, deliveries: null,
  market: "", tag: null, card: null, records: 0, outline: null, names: null, findings: new Map(), qpage: 0,
  devPage: 0, devAfter: [""] };
const MISSING = new Set();
window.__i18nMissing = MISSING;

function t(k, vars) {
  let s = I18N[STATE.lang][k];
  if (s == null) { MISSING.add(`${STATE.lang}:${k}`); s = I18N.en[k] ?? k; }
  return vars ? s.replace(/\{(\w+)\}/g, (_, n) => String(vars[n] ?? "")) : s;
}
// Data the hub names (roles, factors, check names): a word when one exists, the hub's own id otherwise.
const tOr = (k, fallback) => (I18N[STATE.lang][k] ?? fallback);
const $ = (sel, root = document) => root.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
// Numbers as the reader writes them: 1.234 and 45,0 in Indonesian, 1,234 and 45.0 in English.
const locale = () => (STATE.lang === "id" ? "id-ID" : "en-US");
const num = (v) => (v == null ? "–" : Number(v).toLocaleString(locale()));
// Stock as a kitchen says it, as `jejak mbg` does: 13500 g is 13,5 kg (signed data keeps the smallest unit).
const quantity = (v, unit) => {
  const big = { g: "kg", ml: "l" }[unit];
  return big && Math.abs(v) >= 1000 ? `${Number(v / 1000).toLocaleString(locale(), { maximumFractionDigits: 3 })} ${big}` : `${num(v)} ${unit}`;
};
const fixed = (v, places) => Number(v).toLocaleString(locale(), { minimumFractionDigits: places, maximumFractionDigits: places });
const zoneName = (offset) => ZONES[offset] ?? `UTC${offset >= 0 ? "+" : ""}${offset / 3600}`;
// The hub's own times (its clock, checkpoints, a device's last sync, the live feed, market reports) are said in
// WIB, the zone markets' days are judged in (hub/markets), and the hub clock's label names.
const hhmm = (s) => (s == null ? "–" : new Date((s + WIB) * 1000).toISOString().slice(11, 16));
const when = (s) => (s == null ? "–" : new Date((s + WIB) * 1000).toISOString().slice(0, 16).replace("T", " ") + " WIB");
// An MBG kitchen's or school's offset from UTC, as /api/mbg/names carries it from the plan (`jejak mbg`'s
// Speaker.offset): a school in Papua keeps WIT in a plan whose default is WIB. The plan's default for a site the
// names do not list, and WIB when the names say no zone at all (a hub older than per-site zones).
function offset(site) {
  for (const part of ["schools", "kitchens"]) {
    const o = site ? STATE.names?.[part]?.[site]?.tz_offset_s : undefined;
    if (Number.isInteger(o)) return o;
  }
  return Number.isInteger(STATE.names?.tz_offset_s) ? STATE.names.tz_offset_s : WIB;
}
// Whether a table's rows are in more than one zone: then each time says its zone beside it ("09:00 WIT").
const zoned = (sites) => new Set(sites.map(offset)).size > 1;
// A column of times with the zone they are in: "Due (WIT)" when every row's site keeps WIT, "Due (local time)"
// when the rows are in different zones and each time names its own (Speaker.at).
function at(key, sites) {
  const offsets = new Set(sites.map(offset));
  if (!offsets.size) offsets.add(offset());
  return `${t(key)} (${offsets.size > 1 ? t("local_time") : zoneName([...offsets][0])})`;
}
// A time of day at an MBG site, in that site's zone; with `z`, the zone follows it (Speaker.clock).
const clock = (s, site, z = false) => {
  if (s == null) return "–";
  const o = offset(site);
  return new Date((s + o) * 1000).toISOString().slice(11, 16) + (z ? ` ${zoneName(o)}` : "");
};
// A step's time at its site in the history of a day, with how many days from that day when on another (empties
// back after midnight, a batch cooked the evening before): "00:20 (+1 hari)".
const hhmmOn = (s, date, site, z = false) => {
  const apart = s == null ? 0 : Math.floor((s + offset(site)) / 86400) - Math.round(Date.parse(`${date}T00:00:00Z`) / 86400000);
  return apart ? `${clock(s, site, z)} (${apart > 0 ? "+" : ""}${apart} ${t(Math.abs(apart) === 1 ? "day" : "days")})` : clock(s, site, z);
};
const mins = (s) => (s == null ? "–" : Math.abs(s) < 5400 ? `${Math.round(Math.abs(s) / 60)} ${t("unit.min")}`
  : `${Math.floor(Math.round(Math.abs(s) / 60) / 60)} ${t("unit.h")} ${Math.round(Math.abs(s) / 60) % 60} ${t("unit.min")}`);
const dur = (s) => (s == null ? "–" : s < 90 ? `${Math.round(s)} ${t("unit.s")}` : mins(s));
const celsius = (cc) => (cc == null ? "–" : `${fixed(cc / 100, 1)} °C`);
const dayDate = (d) => new Date(d * 86400 * 1000).toISOString().slice(5, 10);
const short = (h) => (h ? `${h.slice(0, 10)}…` : "–");
const badge = (cls, text) => `<span class="badge ${esc(cls)}">${esc(text)}</span>`;
const band = (b) => badge(b, t(`band.${b}`));
// "pasar-petisah/cabai-merah" as people write it: "Pasar Petisah · Cabai Merah".
const titled = (id) => String(id).split("-").map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join(" ");
const marketSubject = (subject) => subject.split("/").map(titled).join(" · ");

// Names people use for the plan's kitchens and schools and the enrolled devices.
function schoolName(id) { const s = STATE.names?.schools?.[id]; return s && s.name ? s.name : (id || "–"); }
function kitchenName(id) { const k = STATE.names?.kitchens?.[id]; return k && k.name ? k.name : (id || "–"); }
function deviceName(hex) { const d = STATE.names?.devices?.[hex]; return d ? (d.name || `${d.site} ${hex.slice(0, 6)}`) : (hex || "").slice(0, 8); }
function siteName(id) { return STATE.names?.schools?.[id] ? schoolName(id) : kitchenName(id); }
function subjectName(code, subject) {
  if (code === "clock_skew" || code === "late_sync" || code === "clock_went_back" || code === "device_clock") return deviceName(subject);
  if (STATE.names?.schools?.[subject] || STATE.names?.kitchens?.[subject]) return siteName(subject);
  if (subject.includes("/")) { const [k, item] = subject.split("/"); return `${kitchenName(k)}: ${item}`; }
  return subject;
}

// Findings in order of what to act on first: food safety, then deliveries that did not come, then the rest;
// data-quality notices last and folded.
const GROUP = { cook_to_serve: "food", danger_zone: "food", hot_holding: "food", no_temperature: "food",
  missing_delivery: "delivery", overdue_delivery: "delivery", late_delivery: "delivery", short_delivery: "delivery",
  over_receipt: "delivery", misrouted: "delivery", container_at_two_schools: "delivery", returned_without_arrival: "delivery",
  tag_not_sent: "delivery", sent_by_other_kitchen: "delivery",
  staff_not_on_roster: "delivery",
  container_lost: "container", container_unreturned: "container", container_returned_late: "container", returned_to_other_kitchen: "container", container_damaged: "container",
  stock_overdraw: "stock", stock_receipt_late: "stock", stock_count_difference: "stock", stock_unit_mismatch: "stock",
  late_sync: "data", clock_skew: "data", clock_went_back: "data", device_clock: "data", duplicate_scan: "data", out_of_order: "data", unknown_site: "data",
  staff_card_tag: "data" };
const RANK = { cook_to_serve: 0, danger_zone: 0, hot_holding: 0, missing_delivery: 1, overdue_delivery: 1 };
function findingRank(f) {
  if (RANK[f.code] != null) return RANK[f.code];
  if (GROUP[f.code] === "data") return 9;
  return { alert: 2, warning: 5, info: 8 }[f.severity] ?? 6;
}
function alertRank(a) {
  if (a.domain === "mbg") return findingRank(a);
  if (a.code === "alps_crisis") return 3;
  if (a.code === "alps_alert") return 4;
  if (a.code === "quarantined") return 10;
  return a.severity === "alert" ? 5 : 7;
}
const bySeverity = (rank) => (x, y) => rank(x) - rank(y) || String(x.code).localeCompare(String(y.code));

// Findings whose sentence counts the portions expected: "of 1 portion", "of 300 portions" in English.
const DELIVERY_COUNTS = new Set(["short_delivery", "missing_delivery", "over_receipt"]);
// What the hub lists an alert raised from a finding under (hub.mbg.analysis.Finding.ref).
const findingRef = (f) => `mbg/${f.code}/${f.subject}/${f.date}${f.part ? `/${f.part}` : ""}`;
// The parts of a danger_zone or hot_holding finding (hub.mbg.analysis.safety_part), by the words that say them.
const TEMPERATURE_PARTS = { served: "served", not_served: "open" };
// When a delivery came in, at its school's time: its first tap in, and where a later vehicle came late, that one
// too (as `jejak mbg`); with `z`, the last time names the zone.
function arrival(d, z = false) {
  const first = d.arrived_at ?? d.received_at;
  const last = d.late_s ? d.deadline_at + d.late_s : first;
  return first == null || last === first ? clock(first, d.school, z) : `${clock(first, d.school)}, ${clock(last, d.school, z)}`;
}
// The steps an out_of_order finding's detail names ('... out of order: received before departed'), in words, as
// `jejak mbg` says them; '' if it names none the page knows.
function stepsSaid(detail) {
  const pairs = String(detail || "").split(": ").slice(1).join(": ").split(", ").map((p) => p.split(" before "));
  if (!pairs.every((p) => p.length === 2 && I18N[STATE.lang][`event.${p[0]}`] != null && I18N[STATE.lang][`event.${p[1]}`] != null)) return "";
  return pairs.map(([later, earlier]) => t("say.step_before", { later: t(`event.${later}`), earlier: t(`event.${earlier}`) })).join(", ");
}
// A finding in words, from its code and values (the same sentences `jejak mbg` prints).
function findingText(f) {
  const d = (STATE.deliveries?.kitchens || []).flatMap((k) => k.schools).find((s) => s.school === f.subject && s.date === f.date) || {};
  const n = (f.containers || []).length || f.measured || (f.records || []).length;
  const site = d.school || f.subject;  // a delivery's times are said at its school, as the hub judges them
  const v = { n, other: schoolName(f.other_school), arrived: clock(d.arrived_at ?? d.received_at, site),
    due: clock(d.deadline_at, site), departed: clock(d.departed_at, site), late: mins(f.measured), received: num(d.received_portions ?? f.measured),
    expected: num(d.expected ?? f.limit), short: num(d.shortfall), skew: mins(f.measured), lag: mins(f.measured),
    measured: num(f.measured), limit: num(f.limit), kitchen: kitchenName(f.other_kitchen) };
  let key = `say.${f.code}`, tail = "";  // tail: words said after the finding's sentence
  if (f.code === "late_delivery" && d.deadline_at != null && f.measured) {
    // When the meals came late: the first vehicle's arrival, or a later vehicle's (its containers named).
    Object.assign(v, { arrived: clock(d.deadline_at + f.measured, site), first: v.arrived });
    if ((f.containers || []).length) key = "say.late_delivery_part";
  }
  // A card its kitchen's roster lists only for a while (`limit` when that ended or begins), as `jejak mbg` says it.
  if (f.code === "staff_not_on_roster" && (f.part === "until" || f.part === "from")) { key = `say.staff_not_on_roster_${f.part}`; v.at = hhmmOn(f.limit, f.date, site); }
  else if (f.code === "staff_not_on_roster" && !f.other_kitchen) key = "say.staff_not_on_roster_unknown";
  if (f.code === "device_clock" && (f.part === "behind" || f.part === "ahead")) key = `say.device_clock_${f.part}`;
  if (f.code === "cook_to_serve" || f.code === "danger_zone") {
    Object.assign(v, { measured: mins(f.measured), limit: mins(f.limit) });
    // Meals served late, not served yet and timed to their arrival are findings of their own (`part`); a day
    // stored before they were says in its detail how its timer stands, as `jejak mbg` reads it.
    const part = f.part ?? (f.open ? "not_served" : null);
    if (f.code === "cook_to_serve" && (part === "not_served" || (part == null && /still open/.test(f.detail || "")))) key = "say.cook_to_serve_open";
    else if (f.code === "cook_to_serve" && (part === "arrival" || (part == null && /not tapped served/.test(f.detail || "")))) key = "say.cook_to_serve_arrived";
  } else if (f.code === "hot_holding") Object.assign(v, { measured: celsius(f.measured), limit: celsius(f.limit) });
  else if (f.code === "no_temperature" && f.measured != null && f.measured === f.limit) key = "say.no_temperature_all";  // "all 30", not "30 of the 30"
  else if (f.code.startsWith("stock_")) {
    // Stock findings speak in their card's unit, which the stock list gives.
    const unit = (STATE.data.mbg?.stock?.on_hand || []).find((s) => `${s.kitchen}/${s.item}` === f.subject)?.unit;
    if (unit) Object.assign(v, { unit, measured: quantity(f.measured ?? 0, unit), limit: quantity(f.limit ?? 0, unit) });
    // The unit a movement the card did not take was recorded in ('Ikat', 'kg') is said after the sentence.
    const recorded = f.code === "stock_unit_mismatch" ? recordedUnit(f) : "";
    if (recorded) tail = ` (${t("recorded_as", { amount: `${num(f.measured)} ${recorded}` })})`;
  }
  else if (f.code === "out_of_order" && (v.steps = stepsSaid(f.detail))) key = "say.out_of_order_steps";
  else if (f.code === "duplicate_scan") {
    // `measured` is the extra reads (a day stored before it was says none: one extra read each).
    const tags = (f.containers || []).length;
    v.n = tags || (f.records || []).length;
    const extra = Number.isInteger(f.measured) && f.measured > 0 ? f.measured : v.n;
    Object.assign(v, { extra: num(extra), times: num(extra + 1) });
    if (!tags) key = "say.duplicate_scan_taps";
    else if (extra === tags) key = "say.duplicate_scan_twice";
  } else if (f.code === "missing_delivery" && (f.containers || []).length) {
    // Nothing tapped in, but its containers came back to the kitchen (returned_without_arrival).
    key = "say.missing_delivery_returned";
    Object.assign(v, { n: f.containers.length, out: num(d.containers_out ?? f.containers.length) });
  } else if (f.code === "over_receipt" && f.limit === 0) {
    key = "say.over_receipt_unplanned";  // meals to a school closed that day
    v.sent = num(d.departed_portions ?? 0);
  } else if (f.code === "container_returned_late") {
    // Back days after its day: `measured` the days late, `limit` when it came back (the day said at the school).
    Object.assign(v, { days: num(f.measured), on: f.limit == null ? "–" : new Date((f.limit + offset(site)) * 1000).toISOString().slice(0, 10) });
  } else if (DELIVERY_COUNTS.has(f.code)) v.n = d.expected ?? f.limit;  // "of 1 portion": the portions expected
  // The meals served and the meals not served yet are danger_zone and hot_holding findings of their own (`part`);
  // a day stored before they were has one finding of both, said without a count.
  if ((f.code === "danger_zone" || f.code === "hot_holding") && TEMPERATURE_PARTS[f.part]) key = `say.${f.code}_${TEMPERATURE_PARTS[f.part]}`;
  if (I18N[STATE.lang][key] == null) return STATE.lang === "en" ? (f.detail || "") : "";
  if (v.n === 1 && I18N[STATE.lang][`${key}.one`] != null) key = `${key}.one`;  // "1 container", not "1 containers"
  return t(key, v) + tail;
}

// The unit a stock_unit_mismatch movement was recorded in, as the hub's detail writes it ("use of 2 Ikat on a card
// kept in ikat: ..."), as `jejak mbg` reads it; "" when the detail does not say it that way.
function recordedUnit(f) {
  const head = String(f.detail || "").split(" on a card kept in ")[0];
  const at = head.indexOf(" of ");
  if (at < 0) return "";
  const rest = head.slice(at + 4), space = rest.indexOf(" ");
  if (space < 0) return "";
  return rest.slice(0, space) === String(f.measured) ? rest.slice(space + 1) : "";
}

async function api(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : r.statusText);
  return body;
}

function table(cols, rows, opts = {}) {
  if (!rows.length) return `<p class="empty">${esc(opts.empty || t("none"))}</p>`;
  // A column of times says its heading with the zone they are in (`head`); the others by their word (`h`).
  const said = (c) => c.head ?? t(c.h);
  const head = cols.map((c) => `<th scope="col" class="${c.num ? "num" : ""}">${esc(said(c))}</th>`).join("");
  const body = rows.map((r, i) => `<tr ${opts.rowAttr ? opts.rowAttr(r, i) : ""}>${cols.map((c) =>
    `<td class="${c.num ? "num" : ""} ${c.cls || ""}" data-h="${esc(said(c))}">${c.f(r)}</td>`).join("")}</tr>`).join("");
  // A wide table scrolls inside its own region, which the keyboard can reach too.
  return `<div class="scroll" tabindex="0" role="region" aria-label="${esc(opts.label || said(cols[0]))}"><table class="${opts.stack ? "stack" : ""}" ${opts.attr || ""}><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table></div>`;
}
const card = (label, value, cls = "", id = "") => `<div class="card ${cls}" ${id ? `data-testid="${id}"` : ""}><div class="n">${value}</div><div class="l">${esc(label)}</div></div>`;

// Long lists come a page at a time.
const PAGE = 20;
function pager(name, page, total, size = PAGE) {
  const pages = Math.max(1, Math.ceil(total / size));
  if (pages <= 1) return "";
  return `<nav class="pager" aria-label="${esc(t("page", { n: page + 1, of: pages }))}" data-testid="pager-${name}">
    <button type="button" class="btn" data-page="${name}" data-to="${page - 1}" ${page <= 0 ? "disabled" : ""}>${t("prev")}</button>
    <span>${t("page", { n: page + 1, of: pages })}</span>
    <button type="button" class="btn" data-page="${name}" data-to="${page + 1}" ${page >= pages - 1 ? "disabled" : ""}>${t("next")}</button></nav>`;
}

async function names() {
  try { STATE.names = await api("/api/mbg/names"); } catch (e) { STATE.names = STATE.names || { schools: {}, kitchens: {}, devices: {} }; }
  return STATE.names;
}

// ---- chain health ------------------------------------------------------------------------------------
// A national hub's regional hubs (GET /api/regions; a hub with no `upstream` lists none and shows no panel): each
// one's state as its last round went and, while its rounds fail, why, since when and what to do.
const REGION_BADGE = { followed: "on_time", pulled: "on_time", unreachable: "late", refused: "missing", split: "missing" };
const troubled = (r) => r.state !== "followed" && r.state !== "pulled";
function regionsPanel(regions) {
  if (!regions.length) return "";
  // The code's meaning in the page's words where it has them; the hub's own message and hint (English, as its log
  // and `jejak hub regions list` say them) one click away.
  const problem = (r) => (r.problem ? `<span class="mono">${esc(r.problem.code)}</span> ${esc(tOr(`region.why.${r.problem.code}`, r.problem.message))}
    <br><small class="muted" data-testid="region-since">${esc(t("region.since", { since: when(r.problem.since), rounds: num(r.problem.rounds) }))}</small>
    <details data-testid="region-detail"><summary>${esc(t("region.detail"))}</summary><small>${esc(r.problem.message)}${r.problem.hint ? `<br>${esc(r.problem.hint)}` : ""}</small></details>` : "–");
  return `<div class="panel"><h2>${t("regions")}</h2>${table([
    { h: "region", f: (r) => `${esc(r.url)}${r.hub ? `<br><span class="mono muted">${esc(r.hub.slice(0, 12))}</span>` : ""}` },
    { h: "region.mode", f: (r) => esc(t(`region.mode.${r.mode}`)) },
    { h: "status", f: (r) => badge(REGION_BADGE[r.state] || "info", t(`region.${r.state}`)) },
    { h: "tree_size", num: true, f: (r) => (r.checkpoint ? `${num(r.checkpoint.tree_size)}<br><small class="muted" data-testid="region-signed">${esc(t("signed"))} ${when(r.checkpoint.time)}</small>` : "–") },
    { h: "region.problem", cls: "wrap", f: problem },
  ], regions, { attr: 'data-testid="regions"', rowAttr: (r) => `data-state="${esc(r.state)}" data-url="${esc(r.url)}"`, label: t("regions"), stack: true })}</div>`;
}

// The hub answers its devices a page at a time in device id order (a national hub holds tens of thousands);
// devAfter[n] is the `after` that asks for page n, learnt from the `next` of page n - 1.
const DEVICE_PAGE = 100;
async function viewChain() {
  const page = STATE.devPage, after = STATE.devAfter[page];
  const [h, forks, regions] = await Promise.all([
    api(`/api/chain/health?limit=${DEVICE_PAGE}${after ? `&after=${after}` : ""}`), api("/api/forks"), api("/api/regions")]);
  STATE.data.chain = h;
  if (h.next) STATE.devAfter[page + 1] = h.next;
  const cp = h.checkpoint, inTrouble = regions.regions.filter(troubled).length;
  return `<h1>${t("chain.title")}</h1>
  <div class="cards">
    ${card(t("records"), num(h.size), "", "chain-size")}
    ${card(t("devices"), num(h.device_count), "", "chain-devices")}
    ${card(t("forks"), num(h.forks), h.forks ? "bad" : "ok", "chain-forks")}
    ${card(t("refused"), num(h.refused_total), h.refused_total ? "warn" : "ok", "chain-refused")}
    ${card(t("duplicates"), num(h.duplicates), "", "chain-duplicates")}
    ${regions.regions.length ? card(t("regions_troubled"), num(inTrouble), inTrouble ? "bad" : "ok", "chain-regions") : ""}
  </div>
  ${regionsPanel(regions.regions)}
  <div class="panel" data-testid="checkpoint"><h2>${t("checkpoint")}</h2>
    ${h.signing_stopped ? `<p class="bad" role="alert" data-testid="signing-stopped"><b>${t("signing_stopped")}</b> <span class="mono">${esc(h.signing_stopped.code)}</span></p>` : ""}
    ${cp ? `<p>${t("tree_size")} <b data-testid="cp-size">${num(cp.tree_size)}</b> · ${t("root")} <span class="mono">${esc(cp.root.slice(0, 32))}…</span> · ${t("signed")} ${when(cp.time)}</p>` : `<p class="empty">${t("none")}</p>`}
    <a class="btn" id="export" href="/api/export" download="jejak-audit.jejak">${t("download")}</a></div>
  <div class="panel"><h2>${t("devices")}</h2>${h.figures_behind ? `<p class="muted" data-testid="figures-counting">${t("figures_counting", { n: num(h.figures_behind) })}</p>` : ""}${table([
    { h: "device", f: (d) => `${esc(d.name)}<br><span class="mono muted">${esc(d.device.slice(0, 12))}</span>` },
    { h: "site", f: (d) => esc(d.site) }, { h: "role", f: (d) => esc(tOr(`role.${d.role}`, d.role)) },
    { h: "status", f: (d) => badge(d.status, tOr(`dev.${d.status}`, d.status))
      + (d.damaged && d.damaged.length ? ` ${badge("damaged", t("restore"))} <span class="mono" data-testid="damaged-${esc(d.device)}">${d.damaged.map(num).join(", ")}</span>` : "") },
    { h: "length", num: true, f: (d) => `<span data-testid="len-${esc(d.device)}">${num(d.length)}</span>` },
    { h: "head", f: (d) => `<span class="mono">${short(d.head)}</span>` },
    { h: "last_seen", f: (d) => hhmm(d.last_seen) + (d.counting ? ` <span class="muted" data-testid="counting-${esc(d.device)}">(${t("counting")})</span>` : "") },
    { h: "sync_lag", num: true, f: (d) => dur(d.sync_lag_s) },
  ], h.devices, { attr: 'data-testid="devices"' })}${pager("devices", page, h.device_count, DEVICE_PAGE)}</div>
  <div class="panel"><h2>${t("forks")} / ${t("refused")}</h2>
    ${forks.forks.length ? table([{ h: "device", f: (f) => esc(deviceName(f.device)) },
      { h: "fork_seq", num: true, f: (f) => f.seq }, { h: "head", f: (f) => `<span class="mono">${short(f.first)} / ${short(f.second)}</span>` }], forks.forks)
      : `<p class="empty">${t("no_forks")}</p>`}
    <p>${Object.entries(h.refused).map(([k, v]) => `<span class="mono">${esc(k)}</span>: <b>${num(v)}</b>`).join(" · ") || ""}</p></div>`;
}

// ---- MBG ---------------------------------------------------------------------------------------------
function findingsPanel(findings) {
  const sorted = [...findings].sort(bySeverity(findingRank));
  const urgent = sorted.filter((f) => GROUP[f.code] !== "data");
  const notices = sorted.filter((f) => GROUP[f.code] === "data");
  const cols = [{ h: "kind", f: (f) => `${badge(f.severity, t(`finding.${f.code}`))}` },
    { h: "subject", f: (f) => esc(subjectName(f.code, f.subject)) },
    { h: "detail", cls: "wrap", f: (f) => esc(findingText(f)) }];
  const row = (f) => `data-code="${esc(f.code)}" data-subject="${esc(f.subject)}"`;
  // Twenty "synced late" lines would bury the three that matter: notices are one folded line per kind.
  const kinds = [...new Set(notices.map((f) => f.code))];
  const folded = kinds.map((code) => {
    const of = notices.filter((f) => f.code === code);
    const worst = of.reduce((w, f) => (Math.abs(f.measured || 0) > Math.abs(w.measured || 0) ? f : w), of[0]);
    return { ...worst, count: of.length, all: of };
  });
  return `${table(cols, urgent, { attr: 'data-testid="findings"', rowAttr: row, label: t("findings"), stack: true })}
    ${notices.length ? `<details class="notices" data-testid="notices"><summary>${esc(t("data_notices", { n: notices.length }))}</summary>
      ${table([{ h: "kind", f: (g) => `${badge("info", t(`finding.${g.code}`))} ×${g.count}` },
        { h: "subject", cls: "wrap", f: (g) => esc(g.all.map((f) => subjectName(f.code, f.subject)).join(", ")) },
        { h: "detail", cls: "wrap", f: (g) => esc(findingText(g)) }], folded, { label: t("group.data"), stack: true })}</details>` : ""}`;
}

// A delivery status as a badge coloured by its class (app.css: meals sent where none was planned, `unplanned`, in
// the colour of a warning, as its over_receipt finding).
const statusBadge = (x) => badge(x, t(`status.${x}`));
// The four statuses always counted, then any other the day has (a truck still on the road, meals not left yet or
// still being received, a delivery nobody planned), so the cards add up to what the table below lists.
const MAIN_STATUS = { on_time: 1, late: 1, short: 1, missing: 1 };
const STATUS_CARD = { overdue: "warn", unplanned: "warn", receiving: "", in_transit: "", pending: "" };
const shownStatuses = (counts) => [...Object.keys(MAIN_STATUS), ...Object.keys(STATUS_CARD).filter((s) => counts[s])];

async function viewMbg() {
  const [del, sum, viol, stock, cont] = await Promise.all([api("/api/mbg/deliveries"), api("/api/dashboard/summary"),
    api("/api/mbg/violations"), api("/api/mbg/stock"), api("/api/mbg/containers"), names()]);
  STATE.data.mbg = { del, sum, viol, stock, cont };
  STATE.deliveries = del;
  STATE.findings = new Map(viol.findings.map((f) => [findingRef(f), f]));
  const tot = del.totals;
  // Each delivery's times at its school, in the school's zone (a WIT school's 09:00 is not 07:00 WIB), as `jejak mbg`
  // says them: the heading names the zone when every school of the kitchen keeps one, else each time names its own.
  const kitchens = del.kitchens.map((k) => {
    const sites = k.schools.map((s) => s.school), z = zoned(sites);
    return `<div class="panel" data-testid="kitchen-${esc(k.kitchen)}">
    <h3>${esc(k.name)} <span class="muted mono">${esc(k.kitchen)}</span></h3>
    <div class="row">${shownStatuses(k.counts).map((s) => `${badge(s, t(s in MAIN_STATUS ? s : `status.${s}`))} <b data-testid="k-${esc(k.kitchen)}-${s}">${k.counts[s]}</b>`).join(" ")}</div>
    ${table([{ h: "school", f: (s) => esc(s.school_name || s.school) }, { h: "status", f: (s) => s.statuses.map(statusBadge).join(" ") },
      { h: "expected", num: true, f: (s) => num(s.expected) }, { h: "received", num: true, f: (s) => num(s.received_portions) },
      { h: "shortfall", num: true, f: (s) => (s.shortfall ? num(s.shortfall) : "–") }, { h: "arrived", head: at("arrived", sites), f: (s) => arrival(s, z) },
      { h: "deadline", head: at("deadline", sites), f: (s) => (s.expected || s.status !== "unplanned" ? clock(s.deadline_at, s.school, z) : "–") }, { h: "late_by", num: true, f: (s) => (s.late_s ? mins(s.late_s) : "–") }], k.schools, { label: k.name })}</div>`;
  }).join("");
  const tags = cont.containers;
  if (!STATE.tag || !tags.some((c) => c.tag === STATE.tag)) STATE.tag = tags.length ? tags[0].tag : null;
  let timeline = `<p class="empty">${t("none")}</p>`;
  if (STATE.tag) {
    const tl = await api(`/api/mbg/containers/${encodeURIComponent(STATE.tag)}`);
    // Each step at its own site's time: the kitchen's and the school's zones may differ. The line above the steps
    // names the zone, as `jejak mbg`'s "Time" heading does.
    timeline = tl.timelines.map((x) => {
      const sites = x.steps.map((s) => s.site), z = zoned(sites);
      return `<p class="muted">${esc(x.date)} · ${esc(schoolName(x.school))}${x.stage ? ` · ${badge(x.stage, t(`event.${x.stage}`))}` : ""} · <span data-testid="timeline-zone">${esc(at("time", sites))}</span></p>
      ${x.closes ? `<p class="muted" data-testid="timeline-closes">${esc(t("closes_trip", { date: x.closes }))}</p>` : ""}
      <ol class="timeline" data-testid="timeline">${x.steps.map((s) => `<li class="${s.derived ? "derived" : ""}" ${s.derived ? `title="${esc(t("derived"))}"` : ""}><b>${esc(t(`event.${s.event}`))}</b>${esc(hhmmOn(s.time, x.date, s.site, z))}<br><small>${esc(siteName(s.site))}${s.temp_cc != null ? ` · ${celsius(s.temp_cc)}` : ""}</small></li>`).join("")}</ol>`;
    }).join("");
  }
  const cards = stock.cards;
  const sel = cards.find((c) => `${c.kitchen}/${c.item}` === STATE.card) || cards[0];
  const source = (v) => (v.source.startsWith("WHO") ? t("source_who") : t("source_sop"));
  return `<h1>${t("mbg.title")} <span class="muted">${esc(del.date)}</span></h1>
  <div class="cards">
    ${card(t("on_time"), num(tot.on_time || 0), "ok", "mbg-on_time")}${card(t("late"), num(tot.late || 0), "late", "mbg-late")}
    ${card(t("short"), num(tot.short || 0), "warn", "mbg-short")}${card(t("missing"), num(tot.missing || 0), "bad", "mbg-missing")}
    ${shownStatuses(tot).filter((s) => !(s in MAIN_STATUS)).map((s) => card(t(`status.${s}`), num(tot[s]), STATUS_CARD[s], `mbg-${s}`)).join("")}
    ${card(t("portions"), `${num(sum.portions.received)} / ${num(sum.portions.expected)}`, "", "mbg-portions")}
    ${card(t("scans_today"), num(sum.total_scans_today), "", "mbg-scans")}
  </div>
  <div class="panel" data-testid="violations"><h2>${t("violations")}</h2>
    ${table([{ h: "rule", f: (v) => badge("alert", t(`finding.${v.rule}`)) }, { h: "school", f: (v) => `${esc(schoolName(v.school))} <span class="muted mono">${esc(v.school)}</span>` },
      { h: "measured", num: true, f: (v) => (v.unit === "cc" ? celsius(v.measured) : mins(v.measured)) },
      { h: "limit", num: true, f: (v) => (v.unit === "cc" ? celsius(v.limit) : mins(v.limit)) },
      // Meals of one delivery served late and not served yet are two rows: each says how many containers it is.
      { h: "detail", cls: "wrap", f: (v) => esc(findingText({ ...v, code: v.rule, subject: v.school })) },
      { h: "source", cls: "muted", f: (v) => `<span title="${esc(STATE.lang === "en" ? v.source : source(v))}">${esc(source(v))}</span>` }],
      [...viol.violations].sort((a, b) => a.rule.localeCompare(b.rule)), { empty: t("no_violations"), label: t("violations"), stack: true })}
    <h3>${t("findings")} (${viol.findings.length})</h3>
    ${findingsPanel(viol.findings)}</div>
  <h2>${t("kitchen")}</h2>${kitchens || `<p class="empty">${t("none")}</p>`}
  <div class="grid2">
    <div class="panel"><h2>${t("containers")}</h2>
      <label>${t("container")} <select id="tag">${tags.map((c) => `<option value="${esc(c.tag)}" ${c.tag === STATE.tag ? "selected" : ""}>${esc(c.tag)} · ${esc(schoolName(c.school))} · ${esc(c.stage ? t(`event.${c.stage}`) : "")}</option>`).join("")}</select></label>
      ${timeline}</div>
    <div class="panel"><h2>${t("stock")}</h2>${table([{ h: "kitchen", f: (s) => esc(kitchenName(s.kitchen)) }, { h: "item", f: (s) => esc(s.item) },
      { h: "on_hand", num: true, f: (s) => esc(quantity(s.on_hand, s.unit)) }, { h: "flags", f: (s) => s.flags.map((f) => badge("alert", t(`finding.stock_${f}`))).join(" ") }],
      stock.on_hand, { attr: 'data-testid="stock"', label: t("stock"), rowAttr: (s) => `tabindex="0" class="click ${sel && sel.kitchen === s.kitchen && sel.item === s.item ? "sel" : ""}" data-card="${esc(s.kitchen)}/${esc(s.item)}"` })}</div>
  </div>
  <div class="panel"><h2>${t("stock_card")} ${sel ? `<span class="muted">${esc(kitchenName(sel.kitchen))} / ${esc(sel.item)}</span>` : ""}</h2>
    ${sel ? table([{ h: "time", head: at("time", [sel.kitchen]), f: (l) => clock(l.time, sel.kitchen) },  // the kitchen's own time { h: "movement", f: (l) => esc(tOr(`movement.${l.movement}`, l.movement)) },
      { h: "in", num: true, f: (l) => (l.qty_in ? num(l.qty_in) : "") }, { h: "out", num: true, f: (l) => (l.qty_out ? num(l.qty_out) : "") },
      { h: "balance", num: true, f: (l) => num(l.balance) }, { h: "flags", f: (l) => l.flags.map((f) => badge("alert", t(`finding.stock_${f}`))).join(" ") }], sel.lines, { label: t("stock_card") }) : ""}</div>`;
}

// ---- markets -----------------------------------------------------------------------------------------
const COLORS = ["#0b6e4f", "#2b6cb0", "#9c5d00", "#805ad5", "#c05621", "#2c7a7b", "#b83280", "#4a5568"];
const BAND_COLOR = { normal: "#2f9e44", stress: "#f0b429", alert: "#e8590c", crisis: "#b02a37" };
const BAND_RANK = { normal: 0, stress: 1, alert: 2, crisis: 3 };

function scale(d0, d1, r0, r1) { const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0); return (v) => r0 + (v - d0) * k; }
// Charts are drawn at about the width they are shown at, so their text stays readable on a phone.
const chartWidth = () => Math.round(Math.min(760, Math.max(320, ($("#view")?.clientWidth || 760) - 40)));
const factor = (k) => tOr(`factor.${k}`, k);

function priceChart(series, impact) {
  const W = chartWidth(), H = W < 500 ? 260 : 300, L = 58, R = 10, T = 12, B = 26;
  const pts = series.flatMap((s) => s.points);
  if (!pts.length) return `<p class="empty">${t("none")}</p>`;
  const days = pts.map((p) => p.day), prices = pts.filter((p) => !p.quarantined).map((p) => p.price_idr);
  const lo = Math.min(...prices), hi = Math.max(...prices), pad = (hi - lo) * 0.1 + 50;
  const x = scale(Math.min(...days), Math.max(...days), L, W - R), y = scale(lo - pad, hi + pad, H - B, T);
  const yOf = (p) => y(Math.min(Math.max(p, lo - pad), hi + pad));
  const imp = new Map(impact.map((i) => [`${i.market}/${i.commodity}/${i.day}`, i]));
  let out = `<svg class="chart" viewBox="0 0 ${W} ${H}" data-testid="price-chart" role="img" aria-label="${esc(t("prices"))}">`;
  for (let i = 0; i <= 4; i++) {
    const v = lo - pad + ((hi - lo + 2 * pad) * i) / 4;
    out += `<line class="grid" x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}"/><text x="${L - 4}" y="${y(v) + 4}" text-anchor="end">${num(Math.round(v / 100) * 100)}</text>`;
  }
  const d0 = Math.min(...days), d1 = Math.max(...days), ticks = W < 500 ? 3 : 6;
  for (let d = d0; d <= d1; d += Math.max(1, Math.round((d1 - d0) / ticks))) out += `<text x="${x(d)}" y="${H - 8}" text-anchor="middle">${dayDate(d)}</text>`;
  out += `<line class="axis" x1="${L}" x2="${L}" y1="${T}" y2="${H - B}"/><line class="axis" x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}"/>`;
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const ok = s.points.filter((p) => !p.quarantined);
    out += `<polyline fill="none" stroke="${c}" stroke-width="1.6" points="${ok.map((p) => `${x(p.day).toFixed(1)},${y(p.price_idr).toFixed(1)}`).join(" ")}"/>`;
    const drawn = new Set();  // one impact dot per series and day, however many reports the day has
    for (const p of ok) {
      const im = imp.get(`${s.market}/${s.commodity}/${p.day}`);
      if (!im || drawn.has(p.day)) continue;
      drawn.add(p.day);
      const w = Object.entries(im.weights).filter(([, v]) => v >= 0.005).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${factor(k)} ${Math.round(v * 100)} %`).join(", "), sc = im.score / 100;
      const tip = `${titled(s.market)} · ${dayDate(p.day)}\n${t("price")}: Rp ${num(p.price_idr)}\n${t("impact")}: ${im.score}/100 (${im.change_pct > 0 ? "+" : ""}${num(im.change_pct)} %)\n${t("dominant")}: ${factor(im.dominant)}\n${t("weights")}: ${w}`;
      out += `<circle class="impact" cx="${x(p.day).toFixed(1)}" cy="${y(p.price_idr).toFixed(1)}" r="${(2 + sc * 9).toFixed(1)}" fill="${c}" fill-opacity="${(0.25 + sc * 0.6).toFixed(2)}" data-tip="${esc(tip)}" data-market="${esc(s.market)}" data-day="${p.day}" data-score="${im.score}" data-dominant="${esc(im.dominant)}"><title>${esc(tip)}</title></circle>`;
    }
    for (const p of s.points.filter((q) => q.quarantined)) {
      const cx = x(p.day), cy = yOf(p.price_idr), tip = `${titled(s.market)} · Rp ${num(p.price_idr)}\n${reasonWords(p.reasons).join("\n")}`;
      out += `<g class="quarantine" data-tip="${esc(tip)}" data-id="${esc(p.id)}"><title>${esc(tip)}</title><line class="q" x1="${cx - 5}" x2="${cx + 5}" y1="${cy - 5}" y2="${cy + 5}"/><line class="q" x1="${cx - 5}" x2="${cx + 5}" y1="${cy + 5}" y2="${cy - 5}"/></g>`;
    }
  });
  out += "</svg>";
  const legend = series.map((s, i) => `<span><i style="background:${COLORS[i % COLORS.length]}"></i>${esc(titled(s.market))}</span>`).join("");
  return out + `<div class="legend">${legend}<span><svg width="12" height="12" aria-hidden="true"><line class="q" x1="1" y1="1" x2="11" y2="11"/><line class="q" x1="1" y1="11" x2="11" y2="1"/></svg> ${t("quarantined")}</span><span>● ${t("impact")}</span></div>`;
}

// The validator's checks in plain words (its own text, with the statistics, stays in the English tooltip).
function reasonWords(reasons) {
  return [...new Set(reasons.map((r) => { const k = r.split(":")[0].trim(); return I18N[STATE.lang][`reason.${k}`] ?? t("reason.other"); }))];
}

// What a series whose reports wait in quarantine says beside its figures (hub/markets/staleness.py).
const heldWords = (h) => t("say.held_series", { date: h.held_since, reports: num(h.held_reports) });

function forecastChart(f) {
  const W = chartWidth(), H = W < 500 ? 220 : 240, L = 58, R = 10, T = 12, B = 26;
  const all = [...f.history.map((h) => h.price), ...f.forecast.flatMap((p) => [p.low, p.high])];
  const days = [...f.history.map((h) => h.day), ...f.forecast.map((p) => p.day)];
  const x = scale(Math.min(...days), Math.max(...days), L, W - R), y = scale(Math.min(...all), Math.max(...all), H - B, T);
  let out = `<svg class="chart" viewBox="0 0 ${W} ${H}" data-testid="forecast-chart" role="img" aria-label="${esc(t("forecast"))}">`;
  for (let i = 0; i <= 3; i++) { const v = Math.min(...all) + ((Math.max(...all) - Math.min(...all)) * i) / 3; out += `<line class="grid" x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}"/><text x="${L - 4}" y="${y(v) + 4}" text-anchor="end">${num(Math.round(v / 100) * 100)}</text>`; }
  const last = f.history[f.history.length - 1];
  const upper = [[last.day, last.price], ...f.forecast.map((p) => [p.day, p.high])], lower = [[last.day, last.price], ...f.forecast.map((p) => [p.day, p.low])].reverse();
  out += `<polygon class="band" points="${[...upper, ...lower].map(([d, v]) => `${x(d).toFixed(1)},${y(v).toFixed(1)}`).join(" ")}"/>`;
  out += `<polyline fill="none" stroke="#0b6e4f" stroke-width="1.8" points="${f.history.map((h) => `${x(h.day).toFixed(1)},${y(h.price).toFixed(1)}`).join(" ")}"/>`;
  out += `<polyline fill="none" stroke="#2b6cb0" stroke-width="1.8" stroke-dasharray="5 3" points="${[[last.day, last.price], ...f.forecast.map((p) => [p.day, p.mean])].map(([d, v]) => `${x(d).toFixed(1)},${y(v).toFixed(1)}`).join(" ")}"/>`;
  for (const p of f.forecast) out += `<circle cx="${x(p.day)}" cy="${y(p.mean)}" r="2.5" fill="#2b6cb0" data-mean="${p.mean}"><title>${dayDate(p.day)}: Rp ${num(p.mean)} (${num(p.low)}–${num(p.high)})</title></circle>`;
  for (const d of [days[0], last.day, days[days.length - 1]]) out += `<text x="${x(d)}" y="${H - 8}" text-anchor="middle">${dayDate(d)}</text>`;
  const conf = f.confidence ? ` · ${t("confidence")}: ${esc(tOr(`confidence.${f.confidence}`, f.confidence))}` : "";
  // A silent market's forecast is of days already past: say how old its data is, above the chart's note.
  const fr = f.freshness;
  // One whose reports arrive but wait in quarantine says so instead: what it lacks is a decision, not a report.
  const stale = fr && fr.stale ? `<p class="stale" data-testid="forecast-stale">${esc(t("say.stale_series", { date: fr.last_report, days: num(fr.days_since) }))}</p>`
    : fr && fr.held ? `<p class="stale" data-testid="forecast-held">${esc(heldWords(fr))}</p>` : "";
  return out + `</svg>${stale}<p class="muted">${t("forecast_note")}${conf}</p>`;
}

// A real map: Leaflet over the bundled province shapes (no tiles from the internet), markers grouped when
// they would overlap at the current zoom.
const MAP = { map: null, layer: null, view: null, markets: [] };

function mapPanel(m) {
  return `<div id="leaflet" class="map" data-testid="map" aria-label="${esc(t("map"))}"></div>
    <p class="muted small">${t("map_hint")}</p>
    <div class="legend">${m.bands.map((b) => `<span><i style="background:${BAND_COLOR[b]}"></i>${esc(t(`band.${b}`))}</span>`).join("")}</div>`;
}

// A series with too few weeks of accepted prices has no band yet: it is listed after the banded ones, and says so.
const bandWord = (a) => (a.band ? t(`band.${a.band}`) : t("band.none"));

function marketTip(mk) {
  return `${mk.name} (${mk.city})\n${[...mk.alps, ...(mk.unbanded || [])].map((a) => `${a.commodity}: ${bandWord(a)}${a.stale ? ` (${t("stale")})` : a.held ? ` (${t("held")})` : ""}`).join("\n")}`;
}

function drawMarkers() {
  const { map, layer, markets } = MAP;
  layer.clearLayers();
  const groups = [];
  for (const mk of markets) {
    const p = map.latLngToLayerPoint([mk.lat, mk.lon]);
    const g = groups.find((x) => x.p.distanceTo(p) < 36);  // a group icon is 32 px wide
    if (g) g.items.push(mk); else groups.push({ p, items: [mk] });
  }
  for (const g of groups) {
    const worst = g.items.reduce((w, mk) => (BAND_RANK[mk.band] > BAND_RANK[w] ? mk.band : w), "normal");
    if (g.items.length === 1) {
      const mk = g.items[0];
      const c = L.circleMarker([mk.lat, mk.lon], { radius: 8, color: "#ffffff", weight: 2, fillColor: BAND_COLOR[mk.band], fillOpacity: 1, className: "mk" }).addTo(layer);
      c.bindTooltip(esc(marketTip(mk)).replace(/\n/g, "<br>"));
      const el = c.getElement();
      el.setAttribute("data-market", mk.id); el.setAttribute("data-band", mk.band);
      el.setAttribute("role", "img"); el.setAttribute("aria-label", marketTip(mk).replace(/\n/g, "; "));
    } else {
      const lat = g.items.reduce((a, mk) => a + mk.lat, 0) / g.items.length, lon = g.items.reduce((a, mk) => a + mk.lon, 0) / g.items.length;
      const label = `${t("group_of", { n: g.items.length })}: ${g.items.map((mk) => mk.name).join(", ")}`;
      const icon = L.divIcon({ className: `cluster ${worst}`, html: `<span>${g.items.length}</span>`, iconSize: [32, 32] });
      const mkr = L.marker([lat, lon], { icon, title: label, alt: label, keyboard: true }).addTo(layer);
      mkr.on("click keypress", () => map.fitBounds(L.latLngBounds(g.items.map((mk) => [mk.lat, mk.lon])).pad(0.6), { maxZoom: map.getZoom() + 3 }));
      const el = mkr.getElement();
      el.setAttribute("data-markets", g.items.map((mk) => mk.id).join(" ")); el.setAttribute("data-band", worst);
      el.setAttribute("aria-label", label);
    }
  }
}

function drawMap(m) {
  const el = $("#leaflet");
  if (!el || !window.L) return;
  if (MAP.map) { MAP.map.remove(); MAP.map = null; }
  const map = L.map(el, { attributionControl: false, zoomSnap: 0.5, minZoom: 3.5, maxZoom: 12, worldCopyJump: false });
  if (MAP.view) map.setView(MAP.view.center, MAP.view.zoom); else map.fitBounds([[-11, 95], [6, 141]]);
  if (STATE.outline) L.geoJSON(STATE.outline, { interactive: false, style: { className: "land", color: "#6f8a7d", weight: 0.8, fillColor: "#e3ebe6", fillOpacity: 1 } }).addTo(map);
  MAP.map = map; MAP.layer = L.layerGroup().addTo(map); MAP.markets = m.markets;
  map.on("zoomend", drawMarkers);
  map.on("moveend", () => { MAP.view = { center: map.getCenter(), zoom: map.getZoom() }; });
  drawMarkers();
}

function alertLine(a) {
  if (a.domain === "mbg") {
    const f = STATE.findings.get(a.id);
    return { what: t(`finding.${a.code}`), about: subjectName(a.code, a.subject), text: f ? findingText(f) : (STATE.lang === "en" ? a.text : "") };
  }
  if (a.code === "quarantined") return { what: t("held"), about: marketSubject(a.subject), text: `Rp ${num(parseInt(a.text, 10))}` };
  if (a.code === "held_series") return { what: t("held_series"), about: marketSubject(a.subject), text: t("say.held_run", { reports: num(a.held_reports), days: num(a.held_days), date: a.held_since }) };
  return { what: tOr(a.code, a.code), about: marketSubject(a.subject), text: STATE.lang === "en" ? a.text : "" };
}

function alertsPanel(alerts) {
  const sorted = [...alerts].sort(bySeverity(alertRank));
  const main = sorted.filter((a) => a.code !== "quarantined"), held = sorted.filter((a) => a.code === "quarantined");
  const cols = [{ h: "kind", f: (a) => badge(a.severity, alertLine(a).what) }, { h: "subject", f: (a) => esc(alertLine(a).about) },
    { h: "detail", cls: "muted wrap", f: (a) => esc(alertLine(a).text.slice(0, 160)) }];
  return `${table(cols, main.slice(0, 30), { empty: held.length ? t("none") : t("no_alerts"), attr: 'data-testid="alerts"', label: t("alerts"), rowAttr: (a) => `data-code="${esc(a.code)}"`, stack: true })}
    ${held.length ? `<details class="notices" data-testid="held-alerts"><summary>${esc(t("held_prices", { n: held.length }))}</summary>${table(cols, held, { label: t("quarantined"), stack: true })}</details>` : ""}`;
}

// Every price waiting for an operator's decision, whatever its commodity, market or age, a page at a time from the
// hub's own list (the prices answer covers only the days it lists).
async function heldPage() {
  const get = () => api(`/api/markets/quarantine?state=pending&offset=${STATE.qpage * PAGE}&limit=${PAGE}`);
  let h = await get();
  const last = Math.max(0, Math.ceil(h.total / PAGE) - 1);
  if (STATE.qpage > last) { STATE.qpage = last; h = await get(); }  // values decided meanwhile: the list is shorter
  return h;
}

async function viewMarkets() {
  if (!STATE.outline) STATE.outline = await fetch("/static/indonesia.geojson").then((r) => r.json()).catch(() => null);
  const all = await api("/api/markets/prices");
  if (!STATE.commodity || !all.commodities.includes(STATE.commodity)) STATE.commodity = all.commodities.includes("cabai-merah") ? "cabai-merah" : all.commodities[0];
  const q = `commodity=${encodeURIComponent(STATE.commodity || "")}${STATE.market ? `&market=${encodeURIComponent(STATE.market)}` : ""}`;
  const [p, m, alerts, h] = await Promise.all([api(`/api/markets/prices?${q}`), api("/api/markets/map"), api("/api/markets/alerts"), heldPage()]);
  let fc = null;
  try { fc = STATE.commodity ? await api(`/api/markets/forecast/${encodeURIComponent(STATE.commodity)}${STATE.market ? `?market=${encodeURIComponent(STATE.market)}` : ""}`) : null; } catch (e) { fc = { error: e.message }; }
  STATE.data.markets = { p, m, alerts, fc, h };
  const name = (c) => all.names[c] || c;
  const mine = (list) => m.markets.flatMap((mk) => (list(mk) || []).map((a) => ({ ...a, name: mk.name }))).filter((a) => a.commodity === STATE.commodity);
  const alps = [...mine((mk) => mk.alps).sort((a, b) => b.alps - a.alps), ...mine((mk) => mk.unbanded)];
  const held = (e) => ({ ...e.observation, reasons: e.verdict.checks.filter((c) => c.fired).map((c) => `${c.check}: ${c.reason}`) });
  return `<h1>${t("markets.title")}</h1>
  <div class="row">
    <label>${t("commodity")} <select id="commodity">${all.commodities.map((c) => `<option value="${esc(c)}" ${c === STATE.commodity ? "selected" : ""}>${esc(name(c))}</option>`).join("")}</select></label>
    <label>${t("market")} <select id="market"><option value="">${t("all_markets")}</option>${all.markets.map((c) => `<option value="${esc(c)}" ${c === STATE.market ? "selected" : ""}>${esc(titled(c))}</option>`).join("")}</select></label>
    <span class="muted">${t("observations")}: <b data-testid="obs-count">${num(p.series.reduce((a, s) => a + s.points.length, 0))}</b></span>
  </div>
  <div class="panel"><h2>${t("prices")} · ${esc(name(STATE.commodity))}</h2>${priceChart(p.series, p.impact)}</div>
  <div class="panel"><h2>${t("alerts")}</h2>${alertsPanel(alerts.alerts)}</div>
  <div class="grid2">
    <div class="panel"><h2>${t("forecast")}</h2>${fc && !fc.error ? forecastChart(fc) : `<p class="empty">${esc(fc ? fc.error : t("none"))}</p>`}</div>
    <div class="panel"><h2>${t("map")}</h2>${mapPanel(m)}</div>
  </div>
  <div class="grid2">
    <div class="panel"><h2>${t("alps")} · ${esc(name(STATE.commodity))}</h2>${table([{ h: "market", f: (a) => esc(a.name) },
      { h: "band", f: (a) => (a.band ? band(a.band) : `<span class="muted" data-testid="alps-none" title="${esc(a.no_band)}">${esc(t("band.none"))}</span>`) + (a.stale ? ` <span class="stale" data-testid="alps-stale" title="${esc(t("say.stale_series", { date: dayDate(a.day), days: num(a.days_since_report) }))}">${esc(t("stale"))}</span>`
        : a.held ? ` <span class="stale" data-testid="alps-held" title="${esc(heldWords(a))}">${esc(t("held"))}</span>` : "") }, { h: "price", num: true, f: (a) => num(a.price_idr) }],
      alps, { attr: 'data-testid="alps"', label: t("alps") })}</div>
    <div class="panel"><h2>${t("quarantined")} <span class="muted" data-testid="held-count">(${num(h.total)})</span></h2>${table([{ h: "market", f: (o) => esc(titled(o.market)) },
      { h: "commodity", f: (o) => esc(h.names[o.commodity] || all.names[o.commodity] || o.commodity) }, { h: "time", f: (o) => when(o.time) },
      { h: "price", num: true, f: (o) => num(o.price_idr) }, { h: "reasons", cls: "muted wrap", f: (o) => `<span title="${esc(STATE.lang === "en" ? o.reasons.join("\n") : reasonWords(o.reasons).join("\n"))}">${reasonWords(o.reasons).map(esc).join("<br>")}</span>` }],
      h.entries.map(held), { attr: 'data-testid="quarantined"', label: t("quarantined"), rowAttr: (o) => `data-id="${esc(o.id)}"` })}${pager("quarantined", STATE.qpage, h.total)}</div>
  </div>`;
}

// ---- shell: routing, language, live events ---------------------------------------------------------
const VIEWS = { chain: viewChain, mbg: viewMbg, markets: viewMarkets };
let rendering = null, again = false;

async function render() {
  if (rendering) { again = true; return rendering; }
  rendering = (async () => {
    const route = (location.hash.replace(/^#\/?/, "") || "chain").split("/")[0];
    STATE.route = VIEWS[route] ? route : "chain";
    document.querySelectorAll("nav a").forEach((a) => {
      a.classList.toggle("active", a.dataset.route === STATE.route);
      if (a.dataset.route === STATE.route) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    const view = $("#view");
    try {
      const html = await VIEWS[STATE.route]();
      const y = window.scrollY;
      const open = [...view.querySelectorAll("details[open]")].map((d) => d.dataset.testid);
      if (MAP.map && STATE.route !== "markets") { MAP.map.remove(); MAP.map = null; }
      view.innerHTML = html;
      open.forEach((id) => { const d = view.querySelector(`details[data-testid="${id}"]`); if (d) d.open = true; });
      if (STATE.route === "markets") drawMap(STATE.data.markets.m);
      view.dataset.route = STATE.route;
      view.dataset.lang = STATE.lang;
      view.dataset.rendered = String(Date.now());
      window.scrollTo(0, y);
    } catch (e) {
      view.innerHTML = `<p class="empty">${esc(e.message)}</p>`;
    }
  })();
  await rendering;
  rendering = null;
  if (again) { again = false; return render(); }
}

function translate() {
  document.documentElement.lang = STATE.lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.querySelectorAll("[data-i18n-label]").forEach((el) => { el.setAttribute("aria-label", t(el.dataset.i18nLabel)); });
  document.querySelectorAll("[data-i18n-title]").forEach((el) => { el.title = t(el.dataset.i18nTitle); });
  $("#lang").textContent = t("switch_to");
  drawAlerts();
}

let pending = null;
function refreshSoon() { if (!pending) pending = setTimeout(() => { pending = null; render(); }, 800); }

function feed(html, cls = "", attrs = "") {
  const ul = $("#feed");
  ul.insertAdjacentHTML("afterbegin", `<li class="new ${cls}" ${attrs}>${html}</li>`);
  while (ul.children.length > 60) ul.lastElementChild.remove();
}

// The live alerts: the most urgent first, held prices as one folded line.
const ALERTS = new Map();
function drawAlerts() {
  const ul = $("#alerts-live");
  const open = [...ALERTS.values()].sort(bySeverity(alertRank));
  const main = open.filter((a) => a.code !== "quarantined"), held = open.filter((a) => a.code === "quarantined");
  const li = (a) => { const l = alertLine(a); return `<li class="${esc(a.severity)}" data-alert="${esc(a.id)}"><b>${esc(l.what)}</b> ${esc(l.about)}<br>${esc(l.text.slice(0, 120))}</li>`; };
  ul.innerHTML = main.slice(0, 6).map(li).join("")
    + (main.length > 6 ? `<li class="more">${esc(t("more_alerts", { n: main.length - 6 }))}</li>` : "")
    + (held.length ? `<li class="warning folded" data-alert="held"><details><summary>${esc(t("held_prices", { n: held.length }))}</summary><ul class="plain">${held.slice(0, 20).map((a) => `<li>${esc(alertLine(a).about)} · ${esc(alertLine(a).text)}</li>`).join("")}</ul></details></li>` : "");
}
function alertItem(a) {
  if (a.resolved_at) ALERTS.delete(a.id); else ALERTS.set(a.id, a);  // an open alert is shown with its current values
  drawAlerts();
}

function connect() {
  const es = new EventSource("/api/events");
  const live = $("#live");
  es.onopen = () => { live.className = "live on"; live.dataset.i18n = "live.on"; live.textContent = t("live.on"); };
  es.onerror = () => { live.className = "live off"; live.dataset.i18n = "live.off"; live.textContent = t("live.off"); };
  es.addEventListener("record", (ev) => {
    const e = JSON.parse(ev.data), r = e.record, b = r.body || {};
    STATE.records += 1;
    const what = r.kind === "scan" ? `${t(`event.${b.event}`)} · ${siteName(b.site)}` : r.kind === "price" ? `${b.commodity} Rp ${num(b.price_idr)} · ${b.market}`
      : r.kind === "stock" ? `${tOr(`movement.${b.movement}`, b.movement)} ${b.item} · ${siteName(b.site)}` : r.kind === "reading" ? `${b.site}` : "";
    feed(`<b>${esc(tOr(`kind.${r.kind}`, r.kind))}</b> ${esc(what)} <span class="mono">${esc(r.id.slice(0, 8))}</span> · ${hhmm(e.arrived_at)}`, "", `data-record="${esc(r.id)}"`);
    refreshSoon();
  });
  es.addEventListener("checkpoint", (ev) => {
    const cp = JSON.parse(ev.data).checkpoint;
    feed(`<b>${t("checkpoint_event")}</b> ${t("tree_size")} ${num(cp.tree_size)} <span class="mono">${esc(cp.root.slice(0, 8))}</span>`, "cp");
    if (STATE.route === "chain") refreshSoon();
  });
  es.addEventListener("alert", (ev) => { alertItem(JSON.parse(ev.data).alert); });
  // The browser reconnects with the last event id it saw and the hub replays what was missed; when it cannot
  // (the hub restarted, or too much was missed) it says so, and the page reloads its data instead.
  es.addEventListener("resync", () => { STATE.records = 0; loadAlerts(); refreshSoon(); });
}

async function loadAlerts() {
  try {
    const [alerts, viol, del] = await Promise.all([api("/api/markets/alerts"), api("/api/mbg/violations"),
      api("/api/mbg/deliveries")]);
    STATE.deliveries = del;
    STATE.findings = new Map(viol.findings.map((f) => [findingRef(f), f]));
    ALERTS.clear();
    alerts.alerts.forEach((a) => ALERTS.set(a.id, a));
    drawAlerts();
  } catch (e) { /* no alerts yet */ }
}

async function tick() {
  try {
    const s = await api("/api/dashboard/summary");
    $("#clock").textContent = when(s.now);
  } catch (e) { /* the hub may be restarting; the next tick tries again */ }
}

document.addEventListener("change", (ev) => {
  const el = ev.target;
  if (el.id === "commodity") { STATE.commodity = el.value; render(); }
  if (el.id === "market") { STATE.market = el.value; render(); }
  if (el.id === "tag") { STATE.tag = el.value; render(); }
});
function pickCard(row) { STATE.card = row.dataset.card; render(); }
document.addEventListener("click", (ev) => {
  const row = ev.target.closest("tr[data-card]");
  if (row) pickCard(row);
  const pg = ev.target.closest("button[data-page]");
  if (pg && !pg.disabled) {
    if (pg.dataset.page === "devices") STATE.devPage = Number(pg.dataset.to); else STATE.qpage = Number(pg.dataset.to);
    render();
  }
});
document.addEventListener("keydown", (ev) => {
  const row = ev.target.closest && ev.target.closest("tr[data-card]");
  if (row && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); pickCard(row); }
});
const tip = () => $("#tip");
document.addEventListener("mouseover", (ev) => {
  const el = ev.target.closest("[data-tip]");
  if (!el) { tip().hidden = true; return; }
  tip().textContent = el.dataset.tip; tip().hidden = false;
  const r = el.getBoundingClientRect();
  tip().style.left = `${Math.min(r.right + 8, window.innerWidth - 310)}px`; tip().style.top = `${r.top}px`;
});
$("#lang").addEventListener("click", () => {
  STATE.lang = STATE.lang === "id" ? "en" : "id";
  localStorage.setItem("jejak.lang", STATE.lang);
  translate(); render();
});
window.addEventListener("hashchange", render);

(async function boot() {
  try {
    const words = await fetch("/static/words.json").then((r) => r.json());
    for (const lang of Object.keys(I18N)) I18N[lang] = { ...words[lang], ...I18N[lang] };
  } catch (e) { /* the page still works with its own words */ }
  translate();
  connect();
  tick(); setInterval(tick, 5000);
  await names();
  await loadAlerts();
  await render();
})();
