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
    const bundle = await readFile(files.bundle);
    const against = files.older ? await readFile(files.older) : null;
    last = J.verifyBundle(bundle, { hubKey: keyHex ? J.fromHex(keyHex) : null, against });
    render(last);
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
