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
        label = {"schema": "output does not match the schema", "error": "model call failed"}.get(
            c.kind, f"{c.kind} {c.source}" if c.kind != "constraint" else f"constraint {c.name}: {c.source}")
        out.append(f"{indent}{label}")
        out.extend(f"{indent}  {d}" for d in c.details)
    out.append(f"{indent}input:  {_short(s.input)}")
    if s.output is not None or not s.raw:
        out.append(f"{indent}output: {_short(s.output)}")
    if s.raw and (s.output is None or any(c.kind == "schema" for c in s.failed_checks())):
        out.append(f"{indent}raw:    {_short(s.raw)}")
    return out


def _result_lines(r: TestResult, color: bool) -> list[str]:
    def c(code: str, text: str) -> str:
        return f"{code}{text}{_X}" if color else text

    tag = {"passed": c(_G, "PASS"), "failed": c(_R, "FAIL"), "skipped": c(_Y, "SKIP")}[r.status]
    head = f"{tag}  {r.kind} \"{r.name}\""
    if r.kind == "case" and len(r.samples) > 1:
        head += f"  (pass rate {r.pass_rate:.0%} over {len(r.samples)} samples)"
    if r.kind == "property" and r.status != "skipped":
        head += f"  ({r.inputs_failed} of {r.inputs_tried} inputs failed)"
    if r.reason:
        head += f"  [{r.reason}]"
    lines = [head]
    if r.status == "failed":
        if r.kind == "case":
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


def to_text(report: Report, color: bool = False) -> str:
    s = report.subject
    out = [f"promptc test: task {report.task} of {report.program}, {s['kind']} {s['name']}"
           + (f" on {s['model']}" if s.get("model") else "")]
    for r in report.results:
        out.extend(_result_lines(r, color))
    u = report.usage()
    out.append(f"{u['requests']} requests ({u['cached']} cached), {u['prompt_tokens_per_request']} prompt tokens and "
               f"{u['latency_per_request_s'] * 1000:.0f} ms per request, {report.seconds:.1f} s in all")
    line = report.summary_line()
    out.append(line if not color else (f"{_B}{_R if report.failed else _G}{line}{_X}"))
    return "\n".join(out)


def to_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False)


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
    for r in report.results:
        tc = ET.SubElement(suite, "testcase", name=f"{r.kind} {r.name}",
                           classname=f"{report.program}.{report.task}", time="0")
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
