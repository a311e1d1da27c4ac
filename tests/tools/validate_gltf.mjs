// Validate GLB files with the Khronos glTF validator (npm gltf-validator, installed in viewer/).
// Usage: node validate_gltf.mjs FILE...   → prints one JSON line per file:
// {"file": ..., "errors": N, "warnings": N, "messages": [first few error/warning messages]}
import { createRequire } from "node:module";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "..", "viewer", "package.json"));
const validator = require("gltf-validator");

let failed = 0;
for (const file of process.argv.slice(2)) {
  const data = new Uint8Array(await readFile(file));
  const report = await validator.validateBytes(data, { uri: path.basename(file), maxIssues: 50 });
  const messages = report.issues.messages
    .filter((m) => m.severity <= 1)
    .slice(0, 8)
    .map((m) => `${m.severity === 0 ? "error" : "warning"} ${m.code} ${m.pointer ?? ""}: ${m.message}`);
  const out = { file, errors: report.issues.numErrors, warnings: report.issues.numWarnings, messages };
  if (report.issues.numErrors) failed++;
  console.log(JSON.stringify(out));
}
process.exitCode = failed ? 1 : 0;
