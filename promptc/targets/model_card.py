"""Model cards: the README.md every artifact carries, written from its manifest.

It says what a registry or a reviewer needs: the program and its version, the task, the base model and
its identity, the method and its options, the data's hash and size, the test gate's results and the
trainable parameters. The card is derived from the manifest alone, so `promptc artifacts show` can
print it for any artifact, and the copy in the directory is covered by the manifest's file hashes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD = "README.md"


def _word(x: Any) -> str:
    """A value in the card's words: yes/no for booleans, none for a missing value, JSON for lists and
    objects (never Python's True/False/None)."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if x is None:
        return "none"
    if isinstance(x, (dict, list, tuple)):
        return json.dumps(x, ensure_ascii=False, sort_keys=True)
    if x == "":
        return '""'
    return str(x)


def _v(x: Any) -> str:
    return f"`{_word(x)}`"


def model_card(manifest: dict[str, Any]) -> str:
    """The model card of an artifact, as Markdown."""
    m = manifest
    prog = m.get("program") or {}
    task = m.get("task") or {}
    kind = m.get("kind", "?")
    target = m.get("target")
    tname = target.get("name") if isinstance(target, dict) else target
    lines = [f"# {tname or '(artifact)'} @ {_word(prog.get('version', '?'))}", "",
             f"A promptc {'tuned' if kind == 'tune' else 'compiled text'} artifact for task `{_word(task.get('name'))}` "
             f"of program `{_word(prog.get('name'))}` {_word(prog.get('version', '?'))}.", ""]
    rows: list[tuple[str, Any]] = [
        ("program", f"{_word(prog.get('name'))} {_word(prog.get('version'))}"), ("program hash", prog.get("hash")),
        ("task", task.get("name")), ("task hash", task.get("hash")), ("kind", kind), ("target", tname),
        ("built with", f"promptc {_word(m.get('promptc'))}")]
    if kind == "tune":
        base = m.get("base") or {}
        rows += [("status (test gate)", m.get("status")), ("family", m.get("family")), ("method", m.get("method")),
                 ("base model", base.get("id")), ("base source", base.get("source")),
                 ("base model type", base.get("model_type")), ("base weights hash", base.get("weights_hash")),
                 ("base config hash", base.get("config_hash")),
                 ("trainable parameters", f"{m.get('trainable_parameters', 0):,}"), ("seed", m.get("seed")),
                 ("learning rate", m.get("lr")), ("labels", m.get("labels")), ("adapter hash", m.get("adapter_hash"))]
    else:
        rows += [("variables", m.get("variables")), ("shots", [s.get("name") or s.get("origin") for s in
                                                               m.get("shots") or []]),
                 ("shot selection", m.get("shot_selection"))]
    lines += ["| | |", "|---|---|", *[f"| {k} | {_v(v)} |" for k, v in rows], ""]
    seeds = m.get("seeds") if kind == "tune" else None
    if isinstance(seeds, dict) and isinstance(seeds.get("candidates"), list):
        lines += ["## Seed selection", "", f"{len(seeds['candidates'])} seeds, each scored by {_word(seeds.get('folds'))}-fold "
                  "cross-validation on the training data only (never the tests); the best trained the artifact.", "",
                  *[f"- seed {_word(c.get('seed'))}: cv {_word(c.get('cv'))} (folds {_v(c.get('folds'))})"
                    + (" **chosen**" if c.get("seed") == seeds.get("chosen") else "")
                    for c in seeds["candidates"] if isinstance(c, dict)],
                  f"- spread: {_word(seeds.get('spread'))}", ""]
    heads = m.get("heads") if kind == "tune" else None
    if isinstance(heads, list) and heads:
        lines += ["## Output heads", "", "One shared encoder body; each field is predicted by its own head, and the "
                  "task's constraints are kept at prediction time (the most probable output that satisfies them).", "",
                  *[f"- `{_word(h.get('field'))}` ({_word(h.get('kind'))}): {_word(h.get('why'))}" for h in heads
                    if isinstance(h, dict)], ""]
    opts = m.get("options") if kind == "tune" else (target or {}).get("options") if isinstance(target, dict) else None
    if opts:
        lines += ["## Options", "", *[f"- `{k}` = {_v(v)}" for k, v in sorted(opts.items())], ""]
    data = m.get("data")
    if isinstance(data, dict):
        lines += ["## Training data", "",
                  f"- hash: {_v(data.get('hash'))}",
                  f"- examples: {_word(data.get('train', 0))} train, {_word(data.get('val', 0))} validation",
                  f"- test inputs excluded from training: {_word(data.get('excluded_test_inputs', 0))}",
                  f"- secrets redacted: {_word(data.get('redacted_secrets', 0))}"]
        if data.get("extra_files"):
            lines.append(f"- extra example files: {_v(data['extra_files'])}")
        if data.get("provenance"):
            lines.append(f"- provenance: {_v(data['provenance'])}")
        lines.append("")
    tests = m.get("tests")
    if isinstance(tests, dict):
        lines += ["## Test gate", "", f"{tests.get('summary', '')} (min pass rate {_word(tests.get('min_pass', 1.0))}, "
                  f"gate: {_word(tests.get('gate', m.get('status')))})", ""]
        results = tests.get("results") or {}
        if results:
            lines += ["| test | kind | status | pass rate |", "|---|---|---|---|"]
            lines += [f"| {name} | {_word(r.get('kind'))} | {_word(r.get('status'))} | {_word(r.get('pass_rate'))} |"
                      for name, r in results.items()]
            lines.append("")
    training = m.get("training")
    if isinstance(training, dict):
        best = training.get("best") or {}
        lines += ["## Training", "", f"- steps: {_word(training.get('steps'))} ({_word(training.get('stopped'))})",
                  f"- best step: {_word(training.get('best_step'))} ({_word(best.get('split'))} accuracy "
                  f"{_word(best.get('val_accuracy'))}, loss {_word(best.get('val_loss'))})", ""]
    if m.get("versions"):
        lines += ["## Library versions", "", *[f"- {k} {_word(v)}" for k, v in sorted(m["versions"].items())], ""]
    lines += ["## Use", "", "```"]
    if kind == "tune":
        lines += ["promptc test PROGRAM.prompt --artifact DIR",
                  "promptc serve --program PROGRAM.prompt --artifact DIR",
                  "promptc export DIR --format peft -o OUT   # or --format vllm for LoRA"]
    else:
        lines += ["promptc run PROGRAM.prompt --artifact DIR --model SPEC --input '{...}'",
                  "promptc serve --model SPEC --program PROGRAM.prompt --artifact DIR"]
    lines += ["```", ""]
    return "\n".join(lines)


def write_model_card(directory: str | Path, manifest: dict[str, Any]) -> Path:
    """Write README.md into an artifact directory (before its file hashes are taken)."""
    path = Path(directory) / CARD
    path.write_text(model_card(manifest), encoding="utf-8")
    return path
