"""Reading `--input` and `--inputs` for run and distill: JSON objects, one per line, each validated
against the task's input schema with its file:line, so a bad line is named rather than guessed at."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptc import ir, jsonl
from promptc.errors import InputError, UsageError
from promptc.nearby import near_hint

MAX_EXCERPT = 80


@dataclass(frozen=True)
class LabelledInput:
    where: str  # "FILE:LINE" or "--input"
    value: dict[str, Any]


def _excerpt(text: str) -> str:
    return text if len(text) <= MAX_EXCERPT else text[:MAX_EXCERPT] + "..."


def _decode(path: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise UsageError(f"{path}:{line}:{col}: not UTF-8 (byte 0x{data[e.start]:02x})",
                         hint="save the file as UTF-8") from None


def _parse(where: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        from promptc.datafiles import json_mistake

        message, col, hint = json_mistake(text, e)
        start = max(0, col - 1 - MAX_EXCERPT // 2)  # a long line is shown around the column
        shown = text[start:start + MAX_EXCERPT].replace("\t", " ")
        head = f"{where} (column {col})" if where.startswith("-") else f"{where}:{col}"  # --input: one line
        raise UsageError(f"{head}: {message}\n  | {shown}\n  | {' ' * (col - 1 - start)}^", hint=hint) from None
    except RecursionError:
        raise UsageError(f"{where}: JSON nested too deeply") from None


def parse_json_arg(value: str, what: str) -> Any:
    """`--input '{"a": 1}'` or `--input @file.json`."""
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            value = path.read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot read {what} file {path}: {e.strerror}",
                             hint=near_hint(path) if isinstance(e, FileNotFoundError) else None) from None
        except UnicodeDecodeError:
            raise UsageError(f"{what} file {path} is not UTF-8") from None
    try:
        return json.loads(value)
    except json.JSONDecodeError as e:
        if "\n" in value.rstrip("\n"):  # a JSON file over several lines: json's own words and position
            raise UsageError(f"{what} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        _parse(what, value.rstrip("\n"))  # one line: the mistake in plain words, with a caret
    except RecursionError:
        raise UsageError(f"{what}: JSON nested too deeply") from None


def read_inputs(input_arg: str | None, inputs_path: str | None) -> list[LabelledInput]:
    """--input JSON|@file, or --inputs FILE.jsonl (one object per line; '-' reads stdin). Lines in the
    examples format ({"input": ..., "output": ...}) are accepted and their input is used."""
    if input_arg is not None:
        items = [LabelledInput("--input", parse_json_arg(input_arg, "--input"))]
    else:
        path = inputs_path or "-"
        try:
            data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as e:
            raise UsageError(f"cannot read --inputs {path}: {e.strerror}",
                             hint=near_hint(path) if isinstance(e, FileNotFoundError) else None) from None
        text = _decode(path, data)
        items = [LabelledInput(f"{path}:{n}", _parse(f"{path}:{n}", line))
                 for n, line in enumerate(jsonl.split(text), 1) if line.strip()]
    out = []
    for item in items:
        v = item.value
        if not isinstance(v, dict):
            raise UsageError(f"{item.where}: expected a JSON object with one entry per task input, got "
                             f"{_excerpt(json.dumps(v, ensure_ascii=False))}")
        if set(v) == {"input"} or ("input" in v and "output" in v):
            v = v["input"]
        out.append(LabelledInput(item.where, v))
    return out


def check_inputs(task: ir.Task, items: list[LabelledInput]) -> None:
    """Validate every input against the task's input schema; one error naming each bad line."""
    from promptc.schema import validate

    problems = []
    for item in items:
        for v in validate(task.input_type, item.value):
            problems.append(f"{item.where}: invalid input: {v.where('input')}: {_excerpt(v.message)}")
    if problems:
        more = f"\n(and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise InputError("\n".join(problems[:20]) + more)
