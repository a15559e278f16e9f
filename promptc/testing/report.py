"""Report formats for test runs: text (for people), JSON (documented in docs/testing.md), JUnit XML."""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree as ET

from promptc.testing.suite import Report, Sample, TestResult

_G, _R, _Y, _B, _X = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[0m"


def _short(v: Any, limit: int = 300) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _sample_lines(s: Sample, indent: str) -> list[str]:
    out = []
    for c in s.failed_checks():
        label = {"schema": "output does not match the schema", "error": "model call failed",
                 "cutoff": "output cut off at the generation budget"}.get(
            c.kind, f"{c.kind} {c.source}" if c.kind != "constraint" else f"constraint {c.name}: {c.source}")
        out.append(f"{indent}{label}")
        out.extend(f"{indent}  {d}" for d in c.details)
    if s.original is not None:
        out.append(f"{indent}original input:  {_short(s.original.input)}")
        out.append(f"{indent}original output: {_short(s.original.output)}")
    if s.labelled:
        out.append(f"{indent}expected: {_short(s.expected)}")
    out.append(f"{indent}input:  {_short(s.input)}")
    if s.output is not None or not s.raw:
        out.append(f"{indent}output: {_short(s.output)}")
    if s.raw and (s.output is None or any(c.kind in ("schema", "cutoff") for c in s.failed_checks())):
        out.append(f"{indent}raw:    {_short(s.raw)}")
    return out


def _result_lines(r: TestResult, color: bool) -> list[str]:
    def c(code: str, text: str) -> str:
        return f"{code}{text}{_X}" if color else text

    tag = {"passed": c(_G, "PASS"), "failed": c(_R, "FAIL"), "skipped": c(_Y, "SKIP")}[r.status]
    head = f"{tag}  {'cases' if r.kind == 'dataset' else r.kind} \"{r.name}\""
    if r.kind == "case" and len(r.samples) > 1:
        head += f"  (pass rate {r.interval} over {len(r.samples)} samples)"
    if r.kind == "property" and r.status != "skipped":
        head += f"  ({r.inputs_failed} of {r.inputs_tried} inputs failed)"
    if r.kind == "dataset" and r.status != "skipped":
        head += f"  ({r.inputs_tried - r.inputs_failed} of {r.inputs_tried} rows passed: {r.interval})"
    if r.robustness is not None:
        head += f"  robustness {r.robustness}"
    if r.flaky:
        head += f"  FLAKY ({r.flaky_inputs} input{'s' if r.flaky_inputs != 1 else ''} with disagreeing samples)"
    if r.reason:
        head += f"  [{r.reason}]"
    lines = [head]
    lines.extend(f"      cut: {cut}" for cut in r.domain_cuts)  # where a cap kept the draws off the domain
    if r.metrics:
        lines.extend(metric_lines(r.metrics, "      "))
    if r.status == "failed":
        if r.kind in ("case", "dataset") or r.robustness is not None:
            failing = next((s for s in r.samples if not s.passed), None)
            if failing:
                lines.extend(_sample_lines(failing, "      "))
        else:
            if r.shrunk is not None:
                lines.append("      shrunk counterexample:")
                lines.extend(_sample_lines(r.shrunk, "        "))
            else:
                first = next((s for s in r.samples if not s.passed), None)
                if first:
                    lines.extend(_sample_lines(first, "      "))
    return lines


def metric_lines(m: dict[str, Any], indent: str) -> list[str]:
    """A dataset's metrics: accuracy, per-label precision/recall/F1 and the confusion matrix (enum output),
    or per-field exact match (record output); every rate with its Wilson 95% interval."""
    out: list[str] = []
    if "classification" in m:
        out.extend(_classification_lines(m["classification"], indent, "output"))
    if "fields" in m:
        f = m["fields"]
        out.append(f"{indent}all fields match: {_rate(f['all'])}")
        for name, rate in f["fields"].items():
            out.append(f"{indent}  {name}: {_rate(rate)}")
        for name, c in (m.get("field_classification") or {}).items():
            out.extend(_classification_lines(c, indent, f"output.{name}"))
    if "exact_match" in m:
        out.append(f"{indent}exact match: {_rate(m['exact_match'])}")
    return out


def _rate(r: dict[str, Any]) -> str:
    if not r["n"]:
        return "-"
    return f"{r['rate']:.1%} [{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}] ({r['k']}/{r['n']})"


def _classification_lines(c: dict[str, Any], indent: str, what: str) -> list[str]:
    out = [f"{indent}{what}: accuracy {_rate(c['accuracy'])}, macro F1 {c['macro_f1']:.3f}"]
    w = max([len(x["label"]) for x in c["per_label"]] + [5])
    out.append(f"{indent}  {'label'.ljust(w)}  {'precision':>9}  {'recall':>9}  {'F1':>5}  support")
    for x in c["per_label"]:
        p, r = x["precision"], x["recall"]
        out.append(f"{indent}  {x['label'].ljust(w)}  {p['rate'] if p['n'] else 0:9.3f}  {r['rate']:9.3f}  "
                   f"{x['f1']:5.3f}  {x['support']}")
    labels, matrix = c["confusion"]["labels"], c["confusion"]["matrix"]
    cw = max([len(lab) for lab in labels] + [4])
    out.append(f"{indent}  confusion (rows expected, columns predicted):")
    out.append(f"{indent}    {''.ljust(cw)}  " + "  ".join(lab.rjust(cw) for lab in labels))
    for lab, row in zip(labels, matrix):
        if sum(row) or lab != "(invalid)":
            out.append(f"{indent}    {lab.ljust(cw)}  " + "  ".join(str(v).rjust(cw) for v in row))
    return out


def repaired_outputs(report: Report) -> int:
    """Judged outputs that the backend repaired into JSON (openai: near-JSON from a server without structured
    outputs, `repaired: true`); a repaired output still had to pass the schema. Counted apart, since a
    model whose answers pass only after repair is not one that writes JSON."""
    return sum(smp.repaired for r in report.results if r.status != "skipped" for smp in r.samples)


def closed_outputs(report: Report) -> int:
    """Judged outputs that constrained decoding closed early because the budget ran low (finish reason
    `closed`): valid values, but shorter than the model would have written. Counted apart, since a
    suite full of them wants a larger max_new_tokens."""
    return sum(smp.closed for r in report.results if r.status != "skipped" for smp in r.samples)


def _notes(report: Report) -> str:
    """The summary line's notes: outputs repaired into JSON, values closed at the budget."""
    notes = []
    for n, what in ((repaired_outputs(report), "repaired into JSON"), (closed_outputs(report),
                                                                       "closed early at the budget")):
        if n:
            notes.append(f"{n} output{'s' if n != 1 else ''} {what}")
    return f" ({'; '.join(notes)})" if notes else ""


def to_text(report: Report, color: bool = False) -> str:
    s = report.subject
    out = [f"promptc test: task {report.task} of {report.program}, {s['kind']} {s['name']}"
           + (f" on {s['model']}" if s.get("model") else "")]
    out.extend(f"warning: {w}" for w in report.warnings)
    for r in report.results:
        out.extend(_result_lines(r, color))
    rob = report.robustness()
    if rob is not None:
        out.append(f"robustness: {rob} of perturbed inputs kept their output relation")
    if report.flaky_tests():
        out.append(f"flaky (repeated samples disagreed): {', '.join(report.flaky_tests())}")
    u = report.usage()
    out.append(f"{u['requests']} requests ({u['cached']} cached), {u['prompt_tokens_per_request']} prompt tokens and "
               f"{u['latency_per_request_s'] * 1000:.0f} ms per request, {report.seconds:.1f} s in all")
    line = report.summary_line() + _notes(report)
    out.append(line if not color else (f"{_B}{_R if report.failed else _G}{line}{_X}"))
    return "\n".join(out)


def to_json(report: Report) -> str:
    data = report.to_json()
    data["summary"].setdefault("repaired", repaired_outputs(report))
    data["summary"].setdefault("closed", closed_outputs(report))
    return json.dumps(data, indent=2, ensure_ascii=False)


def to_junit(report: Report) -> str:
    """JUnit XML: one <testsuite> for the task, one <testcase> per declared test."""
    suites = ET.Element("testsuites", name=f"promptc {report.program}", tests=str(len(report.results)),
                        failures=str(report.failed), errors="0", skipped=str(report.skipped),
                        time=f"{report.seconds:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=f"{report.program}.{report.task}",
                          tests=str(len(report.results)), failures=str(report.failed), errors="0",
                          skipped=str(report.skipped), time=f"{report.seconds:.3f}")
    props = ET.SubElement(suite, "properties")
    for k, v in report.subject.items():
        ET.SubElement(props, "property", name=str(k), value=str(v))
    ET.SubElement(props, "property", name="cutoffs", value=str(report.cutoffs))  # budget, not wrong answers
    ET.SubElement(props, "property", name="repaired", value=str(repaired_outputs(report)))
    ET.SubElement(props, "property", name="closed", value=str(closed_outputs(report)))
    rob = report.robustness()
    if rob is not None:
        ET.SubElement(props, "property", name="robustness", value=str(rob))
    if report.flaky_tests():
        ET.SubElement(props, "property", name="flaky", value=", ".join(report.flaky_tests()))
    for r in report.results:
        tc = ET.SubElement(suite, "testcase", name=f"{'cases' if r.kind == 'dataset' else r.kind} {r.name}",
                           classname=f"{report.program}.{report.task}", time="0")
        if r.status != "skipped":  # the schema allows no per-testcase properties: the numbers go to system-out
            out = [f"pass rate {r.interval}"]
            if r.robustness is not None:
                out.append(f"robustness {r.robustness}")
            if r.flaky:
                out.append(f"flaky: {r.flaky_inputs} input(s) with disagreeing samples")
            out.extend(metric_lines(r.metrics or {}, ""))
            out.extend(f"cut: {cut}" for cut in r.domain_cuts)
            ET.SubElement(tc, "system-out").text = "\n".join(out)
        if r.status == "skipped":
            ET.SubElement(tc, "skipped", message=r.reason or "skipped")
        elif r.status == "failed":
            body = "\n".join(_result_lines(r, False)[1:])
            first = (r.shrunk or next((s for s in r.samples if not s.passed), None))
            msg = "; ".join(f"{c.kind} {c.source or c.name} failed" for c in first.failed_checks()) if first else \
                "failed"
            f = ET.SubElement(tc, "failure", message=msg[:500], type="AssertionError")
            f.text = body
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
