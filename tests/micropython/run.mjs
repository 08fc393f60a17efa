// Loads the MicroPython WebAssembly port, copies firmware/ and these cases into its filesystem, and runs
// run_cases.main() under MicroPython. Usage: node run.mjs [ONLY [EXTRA.py ...]]: ONLY filters case names
// ("" for all), EXTRA files are further case modules to run.
// Exit status: 0 when every case passed, 1 when one failed, 2 when MicroPython itself failed.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const only = process.argv[2] || "";
const extra = process.argv.slice(3);

function copyTree(mp, from, to) {
  mp.FS.mkdirTree(to);
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== "__pycache__") copyTree(mp, source, to + "/" + entry.name);
    } else if (entry.name.endsWith(".py")) {
      mp.FS.writeFile(to + "/" + entry.name, fs.readFileSync(source));
    }
  }
}

const mp = await loadMicroPython({
  heapsize: 16 * 1024 * 1024,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});
copyTree(mp, path.join(root, "firmware"), "/lib/firmware");
mp.FS.mkdirTree("/tests");
for (const name of fs.readdirSync(here)) {
  if (name.endsWith(".py")) mp.FS.writeFile("/tests/" + name, fs.readFileSync(path.join(here, name)));
}

for (const file of extra) mp.FS.writeFile("/tests/" + path.basename(file), fs.readFileSync(file));
const extraNames = extra.map((file) => path.basename(file, ".py"));

let failed;
try {
  await mp.runPythonAsync(
    "import sys\nsys.path.append('/tests')\nimport run_cases\n" +
      "failed = await run_cases.main(" + JSON.stringify(only) + ", " + JSON.stringify(extraNames) + ")\n"
  );
  failed = mp.globals.get("failed");
} catch (error) {
  // PythonError carries the MicroPython traceback; print that, not the minified JavaScript around it.
  process.stderr.write("MicroPython error: " + (error && error.message ? error.message : String(error)) + "\n");
  process.exit(2);
}
process.exit(failed ? 1 : 0);
