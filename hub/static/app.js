// Jejak dashboard: a single page with hash routes, plain JS, no build step and no external assets.
"use strict";

const WIB = 7 * 3600;
const I18N = {
  en: {
    "nav.chain": "Chain health", "nav.mbg": "MBG", "nav.markets": "Markets", "nav.verify": "Verify a bundle", "live.on": "live", "live.off": "offline",
    "feed.title": "Live", "chain.title": "Chain health", "records": "Records in log", "devices": "Devices",
    "forks": "Forks", "refused": "Refused records", "duplicates": "Duplicates", "checkpoint": "Latest checkpoint",
    "tree_size": "tree size", "root": "root", "signed": "signed", "download": "Download audit bundle",
    "device": "Device", "site": "Site", "role": "Role", "status": "Status", "restore": "damaged, awaiting restore", "length": "Length", "head": "Head",
    "last_seen": "Last seen", "sync_lag": "Sync lag", "no_forks": "No forks: every device shows one history.",
    "fork_seq": "Seq", "mbg.title": "MBG deliveries today", "on_time": "On time", "late": "Late", "short": "Short",
    "missing": "Missing", "in_transit": "In transit", "receiving": "Receiving", "pending": "Pending", "portions": "Portions received / expected",
    "school": "School", "expected": "Expected", "received": "Received", "shortfall": "Short by", "arrived": "Arrived",
    "deadline": "Deadline", "late_by": "Late by", "containers": "Container timelines", "container": "Container",
    "violations": "Food-safety violations", "rule": "Rule", "measured": "Measured", "limit": "Limit",
    "source": "Source", "findings": "Findings", "no_violations": "No food-safety violation today.",
    "stock": "Stock on hand", "item": "Item", "on_hand": "On hand", "flags": "Flags", "stock_card": "Stock card",
    "movement": "Movement", "in": "In", "out": "Out", "balance": "Balance", "time": "Time", "kitchen": "Kitchen",
    "markets.title": "Market prices", "commodity": "Commodity", "market": "Market", "all_markets": "All markets",
    "prices": "Prices (IDR)", "quarantined": "Quarantined observations", "reasons": "Reasons", "price": "Price",
    "impact": "Impact score", "dominant": "dominant", "weights": "weights", "forecast": "7-day forecast",
    "interval": "interval", "map": "ALPS early warning by market", "alerts": "Alerts", "no_alerts": "No alerts yet.",
    "alps": "ALPS", "band": "Band", "observations": "Observations", "scans_today": "Scans today",
    "select": "Select a row to see its history.", "none": "Nothing yet.", "code": "Code", "subject": "Subject",
    "detail": "Detail", "model": "model", "days": "day",
  },
  id: {
    "nav.chain": "Kesehatan rantai", "nav.mbg": "MBG", "nav.markets": "Pasar", "nav.verify": "Periksa bundel", "live.on": "langsung",
    "live.off": "terputus", "feed.title": "Langsung", "chain.title": "Kesehatan rantai", "records": "Catatan di log",
    "devices": "Perangkat", "forks": "Percabangan", "refused": "Catatan ditolak", "duplicates": "Duplikat",
    "checkpoint": "Checkpoint terakhir", "tree_size": "ukuran pohon", "root": "akar", "signed": "ditandatangani",
    "download": "Unduh bundel audit", "device": "Perangkat", "site": "Lokasi", "role": "Peran", "status": "Status", "restore": "rusak, menunggu pemulihan",
    "length": "Panjang", "head": "Kepala", "last_seen": "Terakhir terlihat", "sync_lag": "Jeda sinkron",
    "no_forks": "Tidak ada percabangan: setiap perangkat menunjukkan satu riwayat.", "fork_seq": "Urutan",
    "mbg.title": "Pengiriman MBG hari ini", "on_time": "Tepat waktu", "late": "Terlambat", "short": "Kurang",
    "missing": "Tidak datang", "in_transit": "Dalam perjalanan", "receiving": "Sedang diterima", "pending": "Menunggu",
    "portions": "Porsi diterima / direncanakan", "school": "Sekolah", "expected": "Rencana", "received": "Diterima",
    "shortfall": "Kurang", "arrived": "Tiba", "deadline": "Batas", "late_by": "Terlambat", "containers": "Riwayat ompreng",
    "container": "Ompreng", "violations": "Pelanggaran keamanan pangan", "rule": "Aturan", "measured": "Terukur",
    "limit": "Batas", "source": "Sumber", "findings": "Temuan", "no_violations": "Tidak ada pelanggaran hari ini.",
    "stock": "Stok bahan", "item": "Bahan", "on_hand": "Stok", "flags": "Tanda", "stock_card": "Kartu stok",
    "movement": "Mutasi", "in": "Masuk", "out": "Keluar", "balance": "Saldo", "time": "Waktu", "kitchen": "Dapur",
    "markets.title": "Harga pasar", "commodity": "Komoditas", "market": "Pasar", "all_markets": "Semua pasar",
    "prices": "Harga (Rp)", "quarantined": "Observasi dikarantina", "reasons": "Alasan", "price": "Harga",
    "impact": "Skor dampak", "dominant": "dominan", "weights": "bobot", "forecast": "Prakiraan 7 hari",
    "interval": "selang", "map": "Peringatan dini ALPS per pasar", "alerts": "Peringatan",
    "no_alerts": "Belum ada peringatan.", "alps": "ALPS", "band": "Tingkat", "observations": "Observasi",
    "scans_today": "Tap hari ini", "select": "Pilih baris untuk melihat riwayatnya.", "none": "Belum ada.",
    "code": "Kode", "subject": "Subjek", "detail": "Rincian", "model": "model", "days": "hari",
  },
};
const BAND_LABEL = { en: { normal: "normal", stress: "stress", alert: "alert", crisis: "crisis" },
  id: { normal: "normal", stress: "waspada", alert: "siaga", crisis: "krisis" } };
const STATE = { lang: localStorage.getItem("jejak.lang") || "id", route: "chain", data: {}, commodity: null,
  market: "", tag: null, card: null, records: 0, outline: null };

const t = (k) => (I18N[STATE.lang][k] ?? I18N.en[k] ?? k);
const $ = (sel, root = document) => root.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const num = (v) => (v == null ? "–" : Number(v).toLocaleString(STATE.lang === "id" ? "id-ID" : "en-US"));
const hhmm = (s) => (s == null ? "–" : new Date((s + WIB) * 1000).toISOString().slice(11, 16));
const when = (s) => (s == null ? "–" : new Date((s + WIB) * 1000).toISOString().slice(0, 16).replace("T", " ") + " WIB");
const dur = (s) => (s == null ? "–" : s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`);
const dayDate = (d) => new Date(d * 86400 * 1000).toISOString().slice(5, 10);
const short = (h) => (h ? `${h.slice(0, 10)}…` : "–");
const badge = (cls, text) => `<span class="badge ${esc(cls)}">${esc(text)}</span>`;
const band = (b) => badge(b, BAND_LABEL[STATE.lang][b] || b);

async function api(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : r.statusText);
  return body;
}

function table(cols, rows, opts = {}) {
  if (!rows.length) return `<p class="empty">${esc(opts.empty || t("none"))}</p>`;
  const head = cols.map((c) => `<th class="${c.num ? "num" : ""}">${esc(t(c.h))}</th>`).join("");
  const body = rows.map((r, i) => `<tr ${opts.rowAttr ? opts.rowAttr(r, i) : ""}>${cols.map((c) =>
    `<td class="${c.num ? "num" : ""} ${c.cls || ""}">${c.f(r)}</td>`).join("")}</tr>`).join("");
  return `<table ${opts.attr || ""}><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}
const card = (label, value, cls = "", id = "") => `<div class="card ${cls}" ${id ? `data-testid="${id}"` : ""}><div class="n">${value}</div><div class="l">${esc(label)}</div></div>`;

// ---- chain health ------------------------------------------------------------------------------------
async function viewChain() {
  const [h, forks] = await Promise.all([api("/api/chain/health"), api("/api/forks")]);
  STATE.data.chain = h;
  const cp = h.checkpoint;
  const devices = [...h.devices].sort((a, b) => (a.site > b.site ? 1 : -1));
  return `<h1>${t("chain.title")}</h1>
  <div class="cards">
    ${card(t("records"), num(h.size), "", "chain-size")}
    ${card(t("devices"), num(h.devices.length), "", "chain-devices")}
    ${card(t("forks"), num(h.forks), h.forks ? "bad" : "ok", "chain-forks")}
    ${card(t("refused"), num(h.refused_total), h.refused_total ? "warn" : "ok", "chain-refused")}
    ${card(t("duplicates"), num(h.duplicates), "", "chain-duplicates")}
  </div>
  <div class="panel" data-testid="checkpoint"><h2>${t("checkpoint")}</h2>
    ${cp ? `<p>${t("tree_size")} <b data-testid="cp-size">${num(cp.tree_size)}</b> · ${t("root")} <span class="mono">${esc(cp.root.slice(0, 32))}…</span> · ${t("signed")} ${when(cp.time)}</p>` : `<p class="empty">${t("none")}</p>`}
    <a class="btn" id="export" href="/api/export" download="jejak-audit.jejak">${t("download")}</a></div>
  <div class="panel"><h2>${t("devices")}</h2>${table([
    { h: "device", f: (d) => `${esc(d.name)}<br><span class="mono muted">${esc(d.device.slice(0, 12))}</span>` },
    { h: "site", f: (d) => esc(d.site) }, { h: "role", f: (d) => esc(d.role) },
    { h: "status", f: (d) => badge(d.status, d.status)
      + (d.damaged && d.damaged.length ? ` ${badge("damaged", t("restore"))} <span class="mono" data-testid="damaged-${esc(d.device)}">${d.damaged.map(num).join(", ")}</span>` : "") },
    { h: "length", num: true, f: (d) => `<span data-testid="len-${esc(d.device)}">${num(d.length)}</span>` },
    { h: "head", f: (d) => `<span class="mono">${short(d.head)}</span>` },
    { h: "last_seen", f: (d) => hhmm(d.last_seen) }, { h: "sync_lag", num: true, f: (d) => dur(d.sync_lag_s) },
  ], devices, { attr: 'data-testid="devices"' })}</div>
  <div class="panel"><h2>${t("forks")} / ${t("refused")}</h2>
    ${forks.forks.length ? table([{ h: "device", f: (f) => `<span class="mono">${esc(f.device)}</span>` },
      { h: "fork_seq", num: true, f: (f) => f.seq }, { h: "head", f: (f) => `<span class="mono">${short(f.first)} / ${short(f.second)}</span>` }], forks.forks)
      : `<p class="empty">${t("no_forks")}</p>`}
    <p>${Object.entries(h.refused).map(([k, v]) => `${esc(k)}: <b>${num(v)}</b>`).join(" · ") || ""}</p></div>`;
}

// ---- MBG ---------------------------------------------------------------------------------------------
async function viewMbg() {
  const [del, sum, viol, stock, cont] = await Promise.all([api("/api/mbg/deliveries"), api("/api/dashboard/summary"),
    api("/api/mbg/violations"), api("/api/mbg/stock"), api("/api/mbg/containers")]);
  STATE.data.mbg = { del, sum, viol, stock, cont };
  const tot = del.totals;
  const kitchens = del.kitchens.map((k) => `<div class="panel" data-testid="kitchen-${esc(k.kitchen)}">
    <h3>${esc(k.name)} <span class="muted mono">${esc(k.kitchen)}</span></h3>
    <div class="row">${["on_time", "late", "short", "missing"].map((s) => `${badge(s, t(s))} <b data-testid="k-${esc(k.kitchen)}-${s}">${k.counts[s]}</b>`).join(" ")}</div>
    ${table([{ h: "school", f: (s) => esc(s.school_name || s.school) }, { h: "status", f: (s) => s.statuses.map((x) => badge(x, t(x))).join(" ") },
      { h: "expected", num: true, f: (s) => num(s.expected) }, { h: "received", num: true, f: (s) => num(s.received_portions) },
      { h: "shortfall", num: true, f: (s) => (s.shortfall ? num(s.shortfall) : "–") }, { h: "arrived", f: (s) => hhmm(s.arrived_at) },
      { h: "deadline", f: (s) => hhmm(s.deadline_at) }, { h: "late_by", num: true, f: (s) => (s.late_s ? dur(s.late_s) : "–") }], k.schools)}</div>`).join("");
  const tags = cont.containers;
  if (!STATE.tag || !tags.some((c) => c.tag === STATE.tag)) STATE.tag = tags.length ? tags[0].tag : null;
  let timeline = `<p class="empty">${t("none")}</p>`;
  if (STATE.tag) {
    const tl = await api(`/api/mbg/containers/${encodeURIComponent(STATE.tag)}`);
    timeline = tl.timelines.map((x) => `<p class="muted">${esc(x.date)} · ${esc(x.school || "")} · ${badge(x.stage, x.stage)}</p>
      <ol class="timeline" data-testid="timeline">${x.steps.map((s) => `<li class="${s.derived ? "derived" : ""}"><b>${esc(s.event)}</b>${hhmm(s.time)}<br><small>${esc(s.site)}${s.temp_cc != null ? ` · ${(s.temp_cc / 100).toFixed(1)} °C` : ""}</small></li>`).join("")}</ol>`).join("");
  }
  const cards = stock.cards;
  const sel = cards.find((c) => `${c.kitchen}/${c.item}` === STATE.card) || cards[0];
  return `<h1>${t("mbg.title")} <span class="muted">${esc(del.date)}</span></h1>
  <div class="cards">
    ${card(t("on_time"), num(tot.on_time || 0), "ok", "mbg-on_time")}${card(t("late"), num(tot.late || 0), "late", "mbg-late")}
    ${card(t("short"), num(tot.short || 0), "warn", "mbg-short")}${card(t("missing"), num(tot.missing || 0), "bad", "mbg-missing")}
    ${card(t("portions"), `${num(sum.portions.received)} / ${num(sum.portions.expected)}`, "", "mbg-portions")}
    ${card(t("scans_today"), num(sum.total_scans_today), "", "mbg-scans")}
  </div>
  <h2>${t("kitchen")}</h2>${kitchens || `<p class="empty">${t("none")}</p>`}
  <div class="grid2">
    <div class="panel"><h2>${t("containers")}</h2>
      <select id="tag" aria-label="${t("container")}">${tags.map((c) => `<option value="${esc(c.tag)}" ${c.tag === STATE.tag ? "selected" : ""}>${esc(c.tag)} · ${esc(c.school || "")} · ${esc(c.stage || "")}</option>`).join("")}</select>
      ${timeline}</div>
    <div class="panel" data-testid="violations"><h2>${t("violations")}</h2>
      ${table([{ h: "rule", f: (v) => badge("alert", v.rule) }, { h: "school", f: (v) => esc(v.school) },
        { h: "measured", num: true, f: (v) => (v.unit === "cc" ? `${(v.measured / 100).toFixed(1)} °C` : dur(v.measured)) },
        { h: "limit", num: true, f: (v) => (v.unit === "cc" ? `${(v.limit / 100).toFixed(1)} °C` : dur(v.limit)) },
        { h: "source", cls: "muted", f: (v) => `<span title="${esc(v.source)}">${esc(v.source.slice(0, 40))}…</span>` }], viol.violations, { empty: t("no_violations") })}
      <h3>${t("findings")} (${viol.findings.length})</h3>
      ${table([{ h: "code", f: (f) => badge(f.severity, f.code) }, { h: "subject", f: (f) => esc(f.subject) },
        { h: "detail", cls: "muted", f: (f) => esc(f.detail.slice(0, 90)) }], viol.findings)}</div>
  </div>
  <div class="grid2">
    <div class="panel"><h2>${t("stock")}</h2>${table([{ h: "kitchen", f: (s) => esc(s.kitchen) }, { h: "item", f: (s) => esc(s.item) },
      { h: "on_hand", num: true, f: (s) => `${num(s.on_hand)} ${esc(s.unit)}` }, { h: "flags", f: (s) => s.flags.map((f) => badge("alert", f)).join(" ") }],
      stock.on_hand, { attr: 'data-testid="stock"', rowAttr: (s) => `class="click ${sel && sel.kitchen === s.kitchen && sel.item === s.item ? "sel" : ""}" data-card="${esc(s.kitchen)}/${esc(s.item)}"` })}</div>
    <div class="panel"><h2>${t("stock_card")} ${sel ? `<span class="muted">${esc(sel.kitchen)} / ${esc(sel.item)}</span>` : ""}</h2>
      ${sel ? table([{ h: "time", f: (l) => hhmm(l.time) }, { h: "movement", f: (l) => esc(l.movement) },
        { h: "in", num: true, f: (l) => (l.qty_in ? num(l.qty_in) : "") }, { h: "out", num: true, f: (l) => (l.qty_out ? num(l.qty_out) : "") },
        { h: "balance", num: true, f: (l) => num(l.balance) }, { h: "flags", f: (l) => l.flags.map((f) => badge("alert", f)).join(" ") }], sel.lines) : ""}</div>
  </div>`;
}

// ---- markets -----------------------------------------------------------------------------------------
const COLORS = ["#0b6e4f", "#2b6cb0", "#b7791f", "#805ad5", "#c05621", "#2c7a7b", "#b83280", "#4a5568"];

function scale(d0, d1, r0, r1) { const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0); return (v) => r0 + (v - d0) * k; }

function priceChart(series, impact) {
  const W = 760, H = 300, L = 62, R = 12, T = 12, B = 26;
  const pts = series.flatMap((s) => s.points);
  if (!pts.length) return `<p class="empty">${t("none")}</p>`;
  const days = pts.map((p) => p.day), prices = pts.filter((p) => !p.quarantined).map((p) => p.price_idr);
  const lo = Math.min(...prices), hi = Math.max(...prices), pad = (hi - lo) * 0.1 + 50;
  const x = scale(Math.min(...days), Math.max(...days), L, W - R), y = scale(lo - pad, hi + pad, H - B, T);
  const yOf = (p) => y(Math.min(Math.max(p, lo - pad), hi + pad));
  const imp = new Map(impact.map((i) => [`${i.market}/${i.commodity}/${i.day}`, i]));
  let out = `<svg class="chart" viewBox="0 0 ${W} ${H}" data-testid="price-chart" role="img">`;
  for (let i = 0; i <= 4; i++) {
    const v = lo - pad + ((hi - lo + 2 * pad) * i) / 4;
    out += `<line class="grid" x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}"/><text x="${L - 4}" y="${y(v) + 4}" text-anchor="end">${num(Math.round(v / 100) * 100)}</text>`;
  }
  const d0 = Math.min(...days), d1 = Math.max(...days);
  for (let d = d0; d <= d1; d += Math.max(1, Math.round((d1 - d0) / 6))) out += `<text x="${x(d)}" y="${H - 8}" text-anchor="middle">${dayDate(d)}</text>`;
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
      const w = Object.entries(im.weights).filter(([, v]) => v >= 0.005).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", "), sc = im.score / 100;
      const tip = `${s.market} · ${dayDate(p.day)}\n${t("price")}: Rp ${num(p.price_idr)}\n${t("impact")}: ${im.score}/100 (${im.change_pct > 0 ? "+" : ""}${im.change_pct} %)\n${t("dominant")}: ${im.dominant}\n${t("weights")}: ${w}`;
      out += `<circle class="impact" cx="${x(p.day).toFixed(1)}" cy="${y(p.price_idr).toFixed(1)}" r="${(2 + sc * 9).toFixed(1)}" fill="${c}" fill-opacity="${(0.25 + sc * 0.6).toFixed(2)}" data-tip="${esc(tip)}" data-score="${im.score}" data-dominant="${esc(im.dominant)}"><title>${esc(tip)}</title></circle>`;
    }
    for (const p of s.points.filter((q) => q.quarantined)) {
      const cx = x(p.day), cy = yOf(p.price_idr), tip = `${s.market} · Rp ${num(p.price_idr)}\n${p.reasons.join("\n")}`;
      out += `<g class="quarantine" data-tip="${esc(tip)}" data-id="${esc(p.id)}"><title>${esc(tip)}</title><line class="q" x1="${cx - 5}" x2="${cx + 5}" y1="${cy - 5}" y2="${cy + 5}"/><line class="q" x1="${cx - 5}" x2="${cx + 5}" y1="${cy + 5}" y2="${cy - 5}"/></g>`;
    }
  });
  out += "</svg>";
  const legend = series.map((s, i) => `<span><i style="background:${COLORS[i % COLORS.length]}"></i>${esc(s.market)}</span>`).join("");
  return out + `<div class="legend">${legend}<span><svg width="12" height="12"><line class="q" x1="1" y1="1" x2="11" y2="11"/><line class="q" x1="1" y1="11" x2="11" y2="1"/></svg> ${t("quarantined")}</span><span>● ${t("impact")}</span></div>`;
}

function forecastChart(f) {
  const W = 760, H = 240, L = 62, R = 12, T = 12, B = 26;
  const all = [...f.history.map((h) => h.price), ...f.forecast.flatMap((p) => [p.low, p.high])];
  const days = [...f.history.map((h) => h.day), ...f.forecast.map((p) => p.day)];
  const x = scale(Math.min(...days), Math.max(...days), L, W - R), y = scale(Math.min(...all), Math.max(...all), H - B, T);
  let out = `<svg class="chart" viewBox="0 0 ${W} ${H}" data-testid="forecast-chart">`;
  for (let i = 0; i <= 3; i++) { const v = Math.min(...all) + ((Math.max(...all) - Math.min(...all)) * i) / 3; out += `<line class="grid" x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}"/><text x="${L - 4}" y="${y(v) + 4}" text-anchor="end">${num(Math.round(v / 100) * 100)}</text>`; }
  const last = f.history[f.history.length - 1];
  const upper = [[last.day, last.price], ...f.forecast.map((p) => [p.day, p.high])], lower = [[last.day, last.price], ...f.forecast.map((p) => [p.day, p.low])].reverse();
  out += `<polygon class="band" points="${[...upper, ...lower].map(([d, v]) => `${x(d).toFixed(1)},${y(v).toFixed(1)}`).join(" ")}"/>`;
  out += `<polyline fill="none" stroke="#0b6e4f" stroke-width="1.8" points="${f.history.map((h) => `${x(h.day).toFixed(1)},${y(h.price).toFixed(1)}`).join(" ")}"/>`;
  out += `<polyline fill="none" stroke="#2b6cb0" stroke-width="1.8" stroke-dasharray="5 3" points="${[[last.day, last.price], ...f.forecast.map((p) => [p.day, p.mean])].map(([d, v]) => `${x(d).toFixed(1)},${y(v).toFixed(1)}`).join(" ")}"/>`;
  for (const p of f.forecast) out += `<circle cx="${x(p.day)}" cy="${y(p.mean)}" r="2.5" fill="#2b6cb0" data-mean="${p.mean}"><title>${dayDate(p.day)}: Rp ${num(p.mean)} (${num(p.low)}–${num(p.high)})</title></circle>`;
  for (const d of [days[0], last.day, days[days.length - 1]]) out += `<text x="${x(d)}" y="${H - 8}" text-anchor="middle">${dayDate(d)}</text>`;
  return out + `</svg><p class="muted">${t("model")}: ${esc(f.model)} · ${t("interval")}: ${esc(f.interval)}</p>`;
}

function mapChart(m) {
  const W = 760, H = 300, lon = scale(94, 142, 0, W), lat = scale(7, -11.5, 0, H);
  let out = `<svg class="chart" viewBox="0 0 ${W} ${H}" data-testid="map">`;
  if (STATE.outline) {
    for (const f of STATE.outline.features) {
      const polys = f.geometry.type === "Polygon" ? [f.geometry.coordinates] : f.geometry.coordinates;
      out += `<path class="land" d="${polys.map((p) => p.map((r) => `M${r.map(([a, b]) => `${lon(a).toFixed(1)},${lat(b).toFixed(1)}`).join("L")}Z`).join("")).join("")}"/>`;
    }
  }
  for (const mk of m.markets) {
    const w = mk.worst, tip = `${mk.name} (${mk.city})\n${mk.alps.map((a) => `${a.commodity}: ${a.alps} ${a.band}`).join("\n")}`;
    out += `<g class="mk" data-market="${esc(mk.id)}" data-band="${esc(mk.band)}" data-tip="${esc(tip)}"><title>${esc(tip)}</title><circle cx="${lon(mk.lon).toFixed(1)}" cy="${lat(mk.lat).toFixed(1)}" r="7" fill="var(--${mk.band})" stroke="#fff" stroke-width="1.5"/></g>`;
    if (w) out += `<text x="${(lon(mk.lon) + 9).toFixed(1)}" y="${(lat(mk.lat) + 4).toFixed(1)}">${esc(mk.name.replace(/^Pasar (Induk )?/, ""))}</text>`;
  }
  out += "</svg>";
  return out + `<div class="legend">${m.bands.map((b) => `<span><i style="background:var(--${b})"></i>${esc(BAND_LABEL[STATE.lang][b])}</span>`).join("")}</div>`;
}

async function viewMarkets() {
  if (!STATE.outline) STATE.outline = await fetch("/static/indonesia.geojson").then((r) => r.json()).catch(() => null);
  const all = await api("/api/markets/prices");
  if (!STATE.commodity || !all.commodities.includes(STATE.commodity)) STATE.commodity = all.commodities.includes("cabai-merah") ? "cabai-merah" : all.commodities[0];
  const q = `commodity=${encodeURIComponent(STATE.commodity || "")}${STATE.market ? `&market=${encodeURIComponent(STATE.market)}` : ""}`;
  const [p, m, alerts] = await Promise.all([api(`/api/markets/prices?${q}`), api("/api/markets/map"), api("/api/markets/alerts")]);
  let fc = null;
  try { fc = STATE.commodity ? await api(`/api/markets/forecast/${encodeURIComponent(STATE.commodity)}${STATE.market ? `?market=${encodeURIComponent(STATE.market)}` : ""}`) : null; } catch (e) { fc = { error: e.message }; }
  STATE.data.markets = { p, m, alerts, fc };
  const name = (c) => all.names[c] || c;
  const alps = m.markets.flatMap((mk) => mk.alps.map((a) => ({ ...a, name: mk.name }))).filter((a) => a.commodity === STATE.commodity);
  return `<h1>${t("markets.title")}</h1>
  <div class="row">
    <label>${t("commodity")} <select id="commodity">${all.commodities.map((c) => `<option value="${esc(c)}" ${c === STATE.commodity ? "selected" : ""}>${esc(name(c))}</option>`).join("")}</select></label>
    <label>${t("market")} <select id="market"><option value="">${t("all_markets")}</option>${all.markets.map((c) => `<option value="${esc(c)}" ${c === STATE.market ? "selected" : ""}>${esc(c)}</option>`).join("")}</select></label>
    <span class="muted">${t("observations")}: <b data-testid="obs-count">${num(p.series.reduce((a, s) => a + s.points.length, 0))}</b></span>
  </div>
  <div class="panel"><h2>${t("prices")} · ${esc(name(STATE.commodity))}</h2>${priceChart(p.series, p.impact)}</div>
  <div class="grid2">
    <div class="panel"><h2>${t("forecast")}</h2>${fc && !fc.error ? forecastChart(fc) : `<p class="empty">${esc(fc ? fc.error : t("none"))}</p>`}</div>
    <div class="panel"><h2>${t("map")}</h2>${mapChart(m)}</div>
  </div>
  <div class="grid2">
    <div class="panel"><h2>${t("alps")} · ${esc(name(STATE.commodity))}</h2>${table([{ h: "market", f: (a) => esc(a.name) },
      { h: "alps", num: true, f: (a) => a.alps.toFixed(2) }, { h: "band", f: (a) => band(a.band) }, { h: "price", num: true, f: (a) => num(a.price_idr) }],
      alps.sort((a, b) => b.alps - a.alps), { attr: 'data-testid="alps"' })}</div>
    <div class="panel"><h2>${t("quarantined")}</h2>${table([{ h: "market", f: (o) => esc(o.market) }, { h: "time", f: (o) => when(o.time) },
      { h: "price", num: true, f: (o) => num(o.price_idr) }, { h: "reasons", cls: "muted", f: (o) => o.reasons.map(esc).join("<br>") }],
      p.quarantined, { attr: 'data-testid="quarantined"' })}</div>
  </div>
  <div class="panel"><h2>${t("alerts")}</h2>${table([{ h: "code", f: (a) => badge(a.severity, a.code) }, { h: "subject", f: (a) => esc(a.subject) },
    { h: "detail", cls: "muted", f: (a) => esc(a.text.slice(0, 100)) }], alerts.alerts.slice(0, 30), { empty: t("no_alerts"), attr: 'data-testid="alerts"' })}</div>`;
}

// ---- shell: routing, language, live events ---------------------------------------------------------
const VIEWS = { chain: viewChain, mbg: viewMbg, markets: viewMarkets };
let rendering = null, again = false;

async function render() {
  if (rendering) { again = true; return rendering; }
  rendering = (async () => {
    const route = (location.hash.replace(/^#\/?/, "") || "chain").split("/")[0];
    STATE.route = VIEWS[route] ? route : "chain";
    document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.route === STATE.route));
    const view = $("#view");
    try {
      const html = await VIEWS[STATE.route]();
      const y = window.scrollY;
      view.innerHTML = html;
      view.dataset.route = STATE.route;
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
  $("#lang").textContent = STATE.lang === "id" ? "EN" : "ID";
}

let pending = null;
function refreshSoon() { if (!pending) pending = setTimeout(() => { pending = null; render(); }, 800); }

function feed(html, cls = "", attrs = "") {
  const ul = $("#feed");
  ul.insertAdjacentHTML("afterbegin", `<li class="new ${cls}" ${attrs}>${html}</li>`);
  while (ul.children.length > 60) ul.lastElementChild.remove();
}

function alertItem(a) {
  const ul = $("#alerts-live");
  const html = `<b>${esc(a.code)}</b> ${esc(a.subject)}<br>${esc(a.text.slice(0, 120))}`;
  const shown = ul.querySelector(`[data-alert="${CSS.escape(a.id)}"]`);
  if (shown) { shown.innerHTML = html; return; }  // an open alert updated with its current values
  ul.insertAdjacentHTML("afterbegin", `<li class="${esc(a.severity)}" data-alert="${esc(a.id)}">${html}</li>`);
  while (ul.children.length > 8) ul.lastElementChild.remove();
}

function connect() {
  const es = new EventSource("/api/events");
  const live = $("#live");
  es.onopen = () => { live.className = "live on"; live.dataset.i18n = "live.on"; live.textContent = t("live.on"); };
  es.onerror = () => { live.className = "live off"; live.dataset.i18n = "live.off"; live.textContent = t("live.off"); };
  es.addEventListener("record", (ev) => {
    const e = JSON.parse(ev.data), r = e.record, b = r.body || {};
    STATE.records += 1;
    const what = r.kind === "scan" ? `${b.event} @ ${b.site}` : r.kind === "price" ? `${b.commodity} Rp ${num(b.price_idr)} @ ${b.market}`
      : r.kind === "stock" ? `${b.movement} ${b.item} @ ${b.site}` : r.kind === "reading" ? `${b.site}` : r.kind;
    feed(`<b>${esc(r.kind)}</b> ${esc(what)} <span class="mono">${esc(r.id.slice(0, 8))}</span> · ${hhmm(e.arrived_at)}`, "", `data-record="${esc(r.id)}"`);
    refreshSoon();
  });
  es.addEventListener("checkpoint", (ev) => {
    const cp = JSON.parse(ev.data).checkpoint;
    feed(`<b>checkpoint</b> ${t("tree_size")} ${num(cp.tree_size)} <span class="mono">${esc(cp.root.slice(0, 8))}</span>`, "cp");
    if (STATE.route === "chain") refreshSoon();
  });
  es.addEventListener("alert", (ev) => { alertItem(JSON.parse(ev.data).alert); });
  // The browser reconnects with the last event id it saw and the hub replays what was missed; when it cannot
  // (the hub restarted, or too much was missed) it says so, and the page reloads its data instead.
  es.addEventListener("resync", () => { STATE.records = 0; refreshSoon(); });
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
document.addEventListener("click", (ev) => {
  const row = ev.target.closest("tr[data-card]");
  if (row) { STATE.card = row.dataset.card; render(); }
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
  translate();
  connect();
  tick(); setInterval(tick, 5000);
  try { (await api("/api/markets/alerts")).alerts.slice(0, 8).reverse().forEach(alertItem); } catch (e) { /* no alerts yet */ }
  await render();
})();
