"""Extraction on the real embedded MiniLM: `str` fields whose training values are copied from an input
field tune as span heads (start/end over that field's tokens, kept exact through the tokenizer's offset
mapping) on the same body as the finite heads; null for an optional span is a learned outcome."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import promptc
from promptc.heads import Unservable, plan
from promptc.workflows.tune import tune

pytestmark = pytest.mark.model

VENDORS = ["ACME GmbH", "Blue Harbor Ltd", "Nordlicht AG", "Casa Verde SL", "Pine & Co", "Orbit Systems",
           "Kestrel Foods", "Maple Print", "Atlas Freight", "Lumen Labs", "Delta Tools", "Silver Fern Ltd"]
TEMPLATES = ["Invoice from {v}. Date: {d}. Total due: {t} {c}.",
             "{v} billed us {t} {c} on {d} for the March order.",
             "Please pay {t} {c} to {v}. Issued {d}.",
             "Statement: {v}, amount {t} {c}, dated {d}."]
NODATE = ["Invoice from {v}. Total due: {t} {c}. No date given.", "{v} asks for {t} {c}, date to follow."]


def rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        v = rng.choice(VENDORS)
        t = f"{rng.randint(10, 9999):,}.{rng.randint(0, 99):02d}"
        c = rng.choice(["EUR", "USD", "GBP"])
        dated = i % 4 != 3
        d = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        text = rng.choice(TEMPLATES if dated else NODATE).format(v=v, d=d, t=t, c=c)
        out.append({"input": {"text": text},
                    "output": {"vendor": v, "date": d if dated else None, "total": t, "currency": c,
                               "amount": float(t.replace(",", ""))}})
    return out


PROGRAM = """program invoices "1.0.0"
enum Currency { EUR, USD, GBP }
type Invoice {
  vendor: str [max_len=40]
  date: str? [pattern=/\\d{4}-\\d{2}-\\d{2}/]
  total: str [max_len=20]
  currency: Currency
  amount: float [ge=0]
}
task extract(text: str [max_len=400]) -> Invoice {
  prompt "Extract: {{ text }}"
  examples "data.jsonl"
}
test extract {
  case "new vendor" {
    input { text: "Invoice from Quartz Studio. Date: 2024-05-17. Total due: 420.00 EUR." }
    expect output.vendor == "Quartz Studio"
    expect output.total == "420.00"
  }
}
target tune spans for extract { base = "minilm", epochs = 12, lr = 0.004 }
"""


def write(tmp: Path, data: list[dict]) -> Path:
    (tmp / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    (tmp / "p.prompt").write_text(PROGRAM, encoding="utf-8")
    return tmp / "p.prompt"


def test_plan_finds_the_copied_fields_and_says_so():
    data = rows(24, 0)
    prog_path = None  # planning needs no program: the output type and the data
    del prog_path
    prog = promptc.loads(PROGRAM.replace('examples "data.jsonl"', ""))
    hs = plan(prog.ir.tasks["extract"].output, [r["output"] for r in data], [r["input"] for r in data])
    kinds = {h.field: (h.kind, h.source) for h in hs.heads}
    assert kinds == {"vendor": ("span", "text"), "date": ("span", "text"), "total": ("span", "text"),
                     "currency": ("single", ""), "amount": ("span", "text")}
    assert "amount: float written in text (24 of 24 values found in it)" in hs.describe()
    assert "span copied from text (24 of 24 values found in it)" in hs.describe()
    assert next(h for h in hs.heads if h.field == "date").nullable


def test_values_not_copied_exactly_are_refused_naming_how_many_and_one():
    data = rows(20, 1)
    data[3]["output"]["vendor"] = "Acme Gmbh (typo)"
    prog = promptc.loads(PROGRAM.replace('examples "data.jsonl"', ""))
    with pytest.raises(Unservable) as e:
        plan(prog.ir.tasks["extract"].output, [r["output"] for r in data], [r["input"] for r in data])
    assert e.value.field == "vendor" and "1 of 20 values are not copied from input 'text'" in e.value.why
    assert "Acme Gmbh (typo)" in e.value.why


def test_span_heads_learn_to_copy_exact_substrings_and_null(tmp_path):
    train, held = rows(48, 2), rows(16, 3)
    path = write(tmp_path, train)
    lines: list[str] = []
    res = tune(promptc.load(path).ir, "spans", out=tmp_path / "art", info=lines.append)
    assert "vendor: span copied from text" in lines[0]
    assert (res.directory / "span.safetensors").is_file()
    outs = promptc.load(path).task("extract").run([h["input"] for h in held], artifact=res.directory, cache=False)
    assert all(o.ok for o in outs), [o.error for o in outs if not o.ok]
    for o, h in zip(outs, held):
        for f in ("vendor", "total"):
            assert o.output[f] in h["input"]["text"]  # copied exactly, by construction
    exact = {f: sum(o.output[f] == h["output"][f] for o, h in zip(outs, held)) / len(held)
             for f in ("vendor", "date", "total", "currency", "amount")}
    assert exact["vendor"] >= 0.75 and exact["total"] >= 0.75 and exact["date"] >= 0.75, exact
    assert exact["amount"] >= 0.75, exact  # the number written in the text, parsed
    assert all(isinstance(o.output["amount"], float) for o in outs)
    assert res.manifest.status == "passed", res.manifest.tests
