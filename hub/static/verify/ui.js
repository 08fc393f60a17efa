// The verifier page: read files (picker or drop), run Jejak.verifyBundle, show the verdict and each step.
"use strict";
(function (J) {
  const $ = (id) => document.getElementById(id);
  let lang = (navigator.language || "id").toLowerCase().startsWith("en") ? "en" : "id";
  const files = { bundle: null, older: null };
  let last = null;

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
    for (const el of document.querySelectorAll("[data-t]")) el.textContent = J.i18n.say(lang, el.dataset.t, {});
    for (const b of document.querySelectorAll("[data-lang]")) b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
    if (last) render(last);
  }

  function render(report) {
    const say = (key, vars) => J.i18n.say(lang, key, vars || {});
    const verdict = $("verdict");
    verdict.className = report.ok ? "verdict ok" : "verdict fail";
    verdict.dataset.code = report.code || "";
    verdict.dataset.exit = String(report.exit);
    verdict.textContent = report.ok
      ? say("verified") + " (" + say("exit") + " 0)"
      : say("failed") + ": " + report.code + " (" + say("exit") + " " + report.exit + ")";
    const first = J.summary(report).problems[0];
    $("meaning").textContent = report.ok ? "" : J.i18n.T[lang].codes[report.code] + " " + (first.where ? "[" + first.where + "] " : "") + first.message;
    const seen = J.verified(report);
    $("what").textContent = seen.records === null ? "" : say("summary.what", seen);
    $("compare").textContent = seen.key === null ? "" : say(seen.pinned ? "summary.pinned" : "summary.compare", seen);
    const list = $("steps");
    list.textContent = "";
    for (const s of report.steps) {
      const li = document.createElement("li");
      li.className = s.ok ? "ok" : "fail";
      li.dataset.step = s.key;
      li.textContent = (s.ok ? "✔ " : "✘ " + say("notso") + " ") + say(s.key, s.vars);
      if (s.problem) {
        const why = document.createElement("div");
        why.className = "why";
        why.textContent = s.problem.code + ": " + s.problem.message;
        li.appendChild(why);
      }
      list.appendChild(li);
    }
    $("result").hidden = false;
  }

  async function run() {
    $("error").textContent = "";
    if (!files.bundle) { $("error").textContent = J.i18n.say(lang, "nofile"); return; }
    const keyHex = $("hubkey").value.trim();
    if (keyHex && !/^[0-9a-fA-F]{64}$/.test(keyHex)) { $("error").textContent = J.i18n.say(lang, "badkey"); return; }
    const button = $("run");
    button.disabled = true;
    $("result").hidden = true;
    $("busy").textContent = J.i18n.say(lang, "busy", { bytes: files.bundle.size });
    try {
      const bundle = await take(files.bundle);
      const against = files.older ? await take(files.older) : null;
      last = await verifyOffThread(bundle, { hubKey: keyHex ? J.fromHex(keyHex) : null, against });
      render(last);
    } catch (e) {
      $("error").textContent = J.i18n.say(lang, "crashed", { why: String((e && e.message) || e) });
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

  function verifyOffThread(bundle, options) {
    const sources = verifierSources();
    if (!sources.length || typeof Worker === "undefined") {
      return new Promise((resolve) => setTimeout(() => resolve(J.verifyBundle(bundle, options)), 30));
    }
    const body = sources.join("\n;\n") + "\nonmessage = (e) => {\n" +
      "  const r = Jejak.verifyBundle(e.data.bundle, e.data.options);\n" +
      "  for (const d of r.devices) delete d.schedule;\n" +
      "  postMessage(Object.assign({}, r));\n};\n";
    const url = URL.createObjectURL(new Blob([body], { type: "text/javascript" }));
    return new Promise((resolve, reject) => {
      const worker = new Worker(url);
      const done = () => { worker.terminate(); URL.revokeObjectURL(url); };
      worker.onmessage = (e) => { done(); resolve(e.data); };
      worker.onerror = (e) => { e.preventDefault(); done(); reject(new Error(e.message || "worker failed")); };
      worker.postMessage({ bundle, options }, [bundle, options.against].filter((b) => b && b.buffer).map((b) => b.buffer));
    });
  }

  function wireDrop(slot) {
    const zone = $(slot + "-zone"), input = $(slot + "-file"), name = $(slot + "-name");
    const take = (file) => { files[slot] = file || null; name.textContent = file ? file.name + " (" + file.size + " B)" : ""; };
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
  J.ui = { render, run };
})(globalThis.Jejak);
