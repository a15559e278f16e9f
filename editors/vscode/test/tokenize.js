// Tokenize files with the real vscode-textmate engine (on vscode-oniguruma), as VS Code does, and print
// [file, line, startIndex, text, scopes] rows as JSON. tests/core/test_textmate.py compares these with
// textmate-grammar-python's tokens when `npm install` has been run here (it skips otherwise).
//   node test/tokenize.js syntaxes/promptc.tmLanguage.json FILE...
"use strict";
const fs = require("fs");
const vsctm = require("vscode-textmate");
const oniguruma = require("vscode-oniguruma");

const wasm = fs.readFileSync(require.resolve("vscode-oniguruma/release/onig.wasm")).buffer;
const onigLib = oniguruma.loadWASM(wasm).then(() => ({
  createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
  createOnigString: (s) => new oniguruma.OnigString(s),
}));
const [grammarPath, ...files] = process.argv.slice(2);
const registry = new vsctm.Registry({
  onigLib,
  loadGrammar: async (scope) =>
    scope === "source.promptc" ? vsctm.parseRawGrammar(fs.readFileSync(grammarPath, "utf8"), grammarPath) : null,
});
registry.loadGrammar("source.promptc").then((grammar) => {
  const rows = [];
  for (const file of files) {
    let stack = vsctm.INITIAL;
    fs.readFileSync(file, "utf8").split("\n").forEach((line, i) => {
      const r = grammar.tokenizeLine(line, stack);
      for (const t of r.tokens) rows.push([file, i, t.startIndex, line.slice(t.startIndex, t.endIndex), t.scopes]);
      stack = r.ruleStack;
    });
  }
  process.stdout.write(JSON.stringify(rows));
});
