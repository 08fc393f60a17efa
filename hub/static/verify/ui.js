// The verifier page: read files (picker or drop), run Jejak.verifyBundle, show the verdict and each step.
"use strict";
(function (J) {
  const $ = (id) => document.getElementById(id);
  let lang = (navigator.language || "id").toLowerCase().startsWith("en") ? "en" : "id";
  const files = { bundle: null, older: null };
  let last = null;
  let stopped = null; // {code, vars}: why the last check ended without a verdict

  const readFile = (file) => new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(new Uint8Array(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsArrayBuffer(file);
  });

  // A file larger than any bundle (FORMAT.md §12) is not read, as a browser may not hold it: its length alone
  // is what the checks refuse, as jejak-verify does.
  const take = (file) => (file.size > J.MAX_BUNDLE ? Promise.resolve({ length: file.size }) : readFile(file));

  function translate() {
    document.documentElement.lang = lang;
    for (const el of document.querySelectorAll("[data-t]")) el.textContent = J.i18n.say(lang, el.dataset.t, { tested: TESTED_MB });
    for (const b of document.querySelectorAll("[data-lang]")) b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
    for (const slot of ["bundle", "older"]) named(slot);
    if (last) render(last);
    if (stopped) showStopped();
  }

  // "NO VERDICT (CODE): what happened and what to do"; the code is also the #error element's data-code.
  function showStopped() {
    $("error").dataset.code = stopped.code;
    $("error").textContent = J.i18n.say(lang, "noverdict") + " (" + stopped.code + "): " + J.i18n.say(lang, "stopped." + stopped.code, stopped.vars);
  }

  function render(report) {
    const say = (key, vars) => J.i18n.say(lang, key, vars || {});
    const words = (w) => J.i18n.words(lang, w);
    const verdict = $("verdict");
    verdict.className = report.ok ? "verdict ok" : "verdict fail";
    verdict.dataset.code = report.code || "";
    verdict.dataset.exit = String(report.exit);
    verdict.textContent = report.ok
      ? say("verified") + " (" + say("exit") + " 0)"
      : say("failed") + ": " + report.code + " (" + say("exit") + " " + report.exit + ")";
    const first = J.summary(report).problems[0];
    $("meaning").textContent = report.ok ? "" : J.i18n.T[lang].codes[report.code] + " " + (first.at ? "[" + words(first.at) + "] " : "") + words(first.why);
    const seen = J.verified(report);
    const counted = {...seen, records: {n: seen.records, noun: "cli.n.record"}, devices: {n: seen.devices, noun: "cli.n.device"}};
    // "Verified: ..." only under a verified verdict: under a failed one it reads as a second verdict (jejak-verify
    // leaves it out too).
    $("what").textContent = !report.ok || seen.records === null ? "" : say("summary.what", counted) + (seen.ahead ? " " + say("summary.ahead", seen) : "");
    $("compare").textContent = seen.key === null ? "" : say(seen.pinned ? "summary.pinned" : "summary.compare", seen);
    // Notes are not problems (FORMAT.md §12.3): the verdict stands, the auditor weighs what they say.
    const notes = $("notes");
    notes.textContent = "";
    for (const n of report.notes || []) {
      const li = document.createElement("li");
      li.dataset.note = n.note;
      li.textContent = "⚠ " + say("note." + n.note, n);
      notes.appendChild(li);
    }
    // --against: devices revoked since the older bundle below what it verified (FORMAT.md §12.4, notes).
    for (const n of (report.against && report.against.notes) || []) {
      const li = document.createElement("li");
      li.dataset.note = n.note;
      li.textContent = "⚠ " + say("note.revoked", { device: n.device, revoked: n.revoked_from, last: n.verified_to, records: { n: n.records, noun: "cli.n.record" } });
      notes.appendChild(li);
    }
    const list = $("steps");
    list.textContent = "";
    for (const s of report.steps) {
      const li = document.createElement("li");
      li.className = s.ok ? "ok" : "fail";
      li.dataset.step = s.key;
      // A count of problems not listed ("more.*") is no statement that does not hold: it says how many more failed.
      const mark = s.ok ? "✔ " : s.key.startsWith("more.") ? "✘ " : "✘ " + say("notso") + " ";
      li.textContent = mark + say(s.key, s.vars);
      if (s.problem) {
        const why = document.createElement("div");
        why.className = "why";
        why.textContent = s.problem.code + ": " + words(s.problem.why);
        li.appendChild(why);
      }
      list.appendChild(li);
    }
    $("result").hidden = false;
  }

  async function run() {
    $("error").textContent = "";
    $("error").dataset.code = "";
    stopped = null;
    if (!files.bundle) { $("error").textContent = J.i18n.say(lang, "nofile"); return; }
    const keyHex = $("hubkey").value.trim();
    if (keyHex && !/^[0-9a-fA-F]{64}$/.test(keyHex)) { $("error").textContent = J.i18n.say(lang, "badkey"); return; }
    const button = $("run");
    button.disabled = true;
    $("result").hidden = true;
    last = null;
    const size = files.bundle.size;
    const busy = (key, vars) => { $("busy").textContent = J.i18n.say(lang, key, Object.assign({ bytes: size }, vars)); };
    busy(size > TESTED_BYTES ? "busy.large" : "busy", { tested: TESTED_MB });
    try {
      const bundle = await take(files.bundle);
      const against = files.older ? await take(files.older) : null;
      const progress = (done, total, stage) => busy(stage === "older" ? "progress.older" : "progress", { done, total, percent: Math.floor((100 * done) / Math.max(total, 1)) });
      last = await verifyOffThread(bundle, { hubKey: keyHex ? J.fromHex(keyHex) : null, against }, progress);
      render(last);
    } catch (e) {
      // The check did not finish: no verdict, and the bundle is not thereby good or bad.
      const code = e instanceof Stopped ? e.code : "BROWSER_FAILED";
      stopped = { code, vars: { why: String((e && e.message) || e), bytes: size, seconds: Math.round(api.stallMs / 1000) } };
      showStopped();
    } finally {
      $("busy").textContent = "";
      button.disabled = false;
    }
  }

  // A large bundle takes minutes to check: the checks run in a worker made from the verifier's own inlined
  // scripts (the one-file page), so that the page keeps answering. The page as separate files (no sources
  // to read from file://) checks on the page itself, after painting the busy notice.
  function verifierSources() {
    return Array.from(document.querySelectorAll("script[data-src]"))
      .filter((s) => s.dataset.src !== "verify/ui.js").map((s) => s.textContent);
  }

  // Why a check in the worker ended without a report; the code is stable (the page's #error data-code).
  class Stopped extends Error {
    constructor(code, message) { super(message); this.code = code; }
  }

  // The largest bundle measured to verify on this page in Chromium (README); a larger one is tried, with the
  // advice to use jejak-verify, and a clear message if the browser gives up.
  const TESTED_BYTES = 250000000;
  const TESTED_MB = Math.floor(TESTED_BYTES / 1e6);

  // In the worker: the report as plain data of its own. Byte strings are views into the bundle, and one of
  // them posted back would copy the whole bundle to the page; the progress callback cannot be posted at all.
  function plain(v) {
    if (v instanceof Uint8Array) return v.slice();
    if (Array.isArray(v)) return v.map(plain);
    if (v instanceof Map) return new Map(Array.from(v, ([k, x]) => [k, plain(x)]));
    if (v === null || typeof v !== "object") return v;
    const out = {};
    for (const [k, x] of Object.entries(v)) if (typeof x !== "function" && k !== "schedule") out[k] = plain(x);
    return out;
  }

  // The worker reports how far it has come at least every PROGRESS_MS while it checks (a record or a receipt
  // takes milliseconds), and its report or its failure at the end. A worker the browser stopped (out of memory,
  // most often) says nothing more: past stallMs without a word from it, the page says the check stopped.
  const PROGRESS_MS = 500;
  const api = { stallMs: 90000 };

  function verifyOffThread(bundle, options, progress) {
    const sources = verifierSources();
    if (!sources.length || typeof Worker === "undefined") {
      return new Promise((resolve) => setTimeout(() => resolve(J.verifyBundle(bundle, Object.assign({ progress }, options))), 30));
    }
    const body = sources.join("\n;\n") + "\n;\n" + plain.toString() + "\n" +
      "let said = 0;\n" +
      "const progress = (done, total, stage) => {\n" +
      "  const now = Date.now();\n" +
      "  if (now - said >= " + PROGRESS_MS + " || done === total) { said = now; postMessage({ progress: [done, total, stage] }); }\n" +
      "};\n" +
      "onmessage = (e) => {\n" +
      "  postMessage({ progress: [0, 0] });\n" +
      "  let r;\n" +
      "  try { r = Jejak.verifyBundle(e.data.bundle, Object.assign({ progress }, e.data.options)); }\n" +
      "  catch (err) { postMessage({ failed: String((err && err.message) || err), name: String((err && err.name) || \"Error\") }); return; }\n" +
      "  postMessage({ report: plain(r) });\n};\n";
    const url = URL.createObjectURL(new Blob([body], { type: "text/javascript" }));
    return new Promise((resolve, reject) => {
      const worker = new Worker(url);
      api.worker = worker;
      let heard = Date.now();
      const watchdog = setInterval(() => {
        if (Date.now() - heard > api.stallMs) stop(new Stopped("BROWSER_STALLED", "no progress for " + Math.round(api.stallMs / 1000) + " s"));
      }, 1000);
      function stop(error, report) {
        clearInterval(watchdog);
        worker.terminate();
        URL.revokeObjectURL(url);
        api.worker = null;
        if (error) reject(error); else resolve(report);
      }
      worker.onmessage = (e) => {
        heard = Date.now();
        const m = e.data;
        if (m.progress) { if (m.progress[1]) progress(...m.progress); return; }
        if (m.report) return stop(null, m.report);
        // A RangeError in a check is the browser refusing memory ("Array buffer allocation failed") or another
        // of its limits ("Maximum call stack size exceeded"): the bundle is too large for this browser.
        stop(new Stopped(m.name === "RangeError" ? "BROWSER_OUT_OF_MEMORY" : "BROWSER_FAILED", m.name + ": " + m.failed));
      };
      worker.onmessageerror = () => stop(new Stopped("BROWSER_FAILED", "the worker's report could not be read"));
      worker.onerror = (e) => {
        e.preventDefault();
        const why = e.message || "the worker stopped";
        stop(new Stopped(/memory|allocation/i.test(why) ? "BROWSER_OUT_OF_MEMORY" : "BROWSER_FAILED", why));
      };
      worker.postMessage({ bundle, options }, [bundle, options.against].filter((b) => b && b.buffer).map((b) => b.buffer));
    });
  }

  // The chosen file's name and size, beside its picker.
  function named(slot) {
    const file = files[slot];
    $(slot + "-name").textContent = file ? J.i18n.say(lang, "file", { name: file.name, bytes: file.size }) : "";
  }

  function wireDrop(slot) {
    const zone = $(slot + "-zone"), input = $(slot + "-file");
    const take = (file) => { files[slot] = file || null; named(slot); };
    input.addEventListener("change", () => take(input.files[0]));
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      take(e.dataTransfer.files[0]);
      if (slot === "bundle") run();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    wireDrop("bundle");
    wireDrop("older");
    $("run").addEventListener("click", run);
    for (const b of document.querySelectorAll("[data-lang]")) b.addEventListener("click", () => { lang = b.dataset.lang; translate(); });
    translate();
  });
  // stallMs and the running worker are there for the page's tests too.
  J.ui = Object.assign(api, { render, run, TESTED_BYTES });
})(globalThis.Jejak);
