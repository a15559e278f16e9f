// The promptc extension: highlighting comes from the TextMate grammar (syntaxes/); everything else
// (diagnostics, hover, definition, references, rename, completion, symbols, formatting) comes from
// `promptc lsp`, started here over stdio. Plain JavaScript, so there is no build step.
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("promptc");
  const command = config.get("server.command", "promptc");
  const args = config.get("server.args", ["lsp"]);
  const serverOptions = { command, args, transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: [{ scheme: "file", language: "promptc" }, { scheme: "untitled", language: "promptc" }],
    // examples files feed the program's diagnostics: re-check when one changes on disk
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher("**/*.jsonl") },
  };
  client = new LanguageClient("promptc", "promptc", serverOptions, clientOptions);
  client.start().catch((err) => {
    vscode.window.showErrorMessage(
      `promptc: could not start \`${command} ${args.join(" ")}\` (${err.message || err}). ` +
      "Install it with `pip install 'promptc[lsp]'` or set promptc.server.command."
    );
  });
  context.subscriptions.push({ dispose: () => client && client.stop() });
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
