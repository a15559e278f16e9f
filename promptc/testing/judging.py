"""Test stage: the model-backed parts of judging. `judge("rubric")` asks a judge model (`--judge-model`)
for a verdict and a reason; `similar(a, b)` is the cosine of MiniLM embeddings; `paraphrase()`
perturbations ask a teacher model (`--teacher`). Every model call goes through the generation cache,
like any other generation, so a re-run of an unchanged suite calls no judge either.

The runner binds a Runtime to each judged output (expr.MODEL_RUNTIME), so the expression functions see
the output and inputs they are judging; verdicts, reasons and scores land in the check's details.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from promptc import expr, ir
from promptc.errors import UsageError
from promptc.models.base import Decoding, Request, generate

JUDGE_SYSTEM = ("You grade one output of an AI task against a rubric. Read the task input and the output, decide "
                "whether the output meets the rubric, and answer with a JSON object: "
                '{"verdict": "pass" or "fail", "reason": "one short sentence"}.')
JUDGE_OUTPUT = ir.RecordT("judgement", (("verdict", ir.EnumT("verdict", ("pass", "fail"))),
                                        ("reason", ir.StrT(max_len=300))))
PARAPHRASE_SYSTEM = ("Paraphrase the user's text: keep its meaning, its language and every fact, change the wording. "
                     "Reply with the paraphrase only.")
MODEL_FUNCTIONS = ("judge", "similar")


def _calls(node: Any, names: tuple[str, ...]) -> bool:
    if isinstance(node, expr.Fn):
        return node.name in names or any(_calls(a, names) for a in node.args)
    for child in getattr(node, "__slots__", ()):
        value = getattr(node, child, None)
        if isinstance(value, tuple):
            if any(_calls(v, names) for v in value):
                return True
        elif hasattr(value, "__slots__") and _calls(value, names):
            return True
    return False


def uses(tests: list[Any], names: tuple[str, ...]) -> bool:
    """Whether any expect/check of `tests` (ir.Case / ir.Property) calls one of `names`."""
    for t in tests:
        for node, _src in getattr(t, "expects", ()) + getattr(t, "checks", ()):
            if _calls(node, names):
                return True
    return False


class Runtime:
    """Serves judge() and similar() for the output being judged; logs what each call said."""

    def __init__(self, judge_backend: Any, cache: Any, uses_judge: bool):
        self.backend = judge_backend
        self.cache = cache
        self.uses_judge = uses_judge
        self.collecting = False  # first pass: gather judge requests, answer a placeholder
        self.pending: dict[str, Request] = {}
        self.memo: dict[str, tuple[bool, str]] = {}
        self.log: list[str] = []
        self.env: dict[str, Any] = {}
        self.decoding = Decoding(max_new_tokens=200)

    @contextmanager
    def bound(self, env: dict[str, Any]) -> Iterator[None]:
        self.env = env
        token = expr.MODEL_RUNTIME.set(self)
        try:
            yield
        finally:
            expr.MODEL_RUNTIME.reset(token)

    def _request(self, rubric: str) -> tuple[str, Request]:
        inputs = {k: v for k, v in self.env.items() if k != "output"}
        user = (f"Rubric: {rubric}\n\nTask input:\n{json.dumps(inputs, ensure_ascii=False, indent=2)}\n\n"
                f"Output:\n{json.dumps(self.env.get('output'), ensure_ascii=False, indent=2)}")
        messages = [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]
        return json.dumps(messages, sort_keys=True), Request(messages, f"{JUDGE_SYSTEM}\n\n{user}\n", JUDGE_OUTPUT)

    def judge(self, rubric: str) -> bool:
        key, req = self._request(rubric)
        if key not in self.memo:
            if self.collecting:
                self.pending[key] = req
                return True
            self.pending[key] = req
            self.flush()
        verdict, reason = self.memo[key]
        self.log.append(f"judge({json.dumps(rubric, ensure_ascii=False)}): {'pass' if verdict else 'fail'} -- "
                        f"{reason}")
        return verdict

    def flush(self) -> None:
        """Send every pending judge request in one batch (through the cache)."""
        from promptc.outputs import parse_output

        if not self.pending:
            return
        keys, reqs = list(self.pending), list(self.pending.values())
        self.pending = {}
        for k, g in zip(keys, generate(self.backend, reqs, self.decoding, self.cache)):
            if g.error:
                self.memo[k] = (False, f"the judge model failed: {g.error}")
                continue
            parsed = parse_output(JUDGE_OUTPUT, g.text)
            if not parsed.ok:
                self.memo[k] = (False, f"the judge's answer did not parse ({parsed.error}): {g.text[:200]!r}")
            else:
                self.memo[k] = (parsed.value["verdict"] == "pass", parsed.value["reason"])

    def similar(self, a: str, b: str) -> float:
        value = similarity(a, b)
        self.log.append(f"similar({_short(a)}, {_short(b)}) = {value:.3f}")
        return value


def _short(s: str, n: int = 40) -> str:
    return json.dumps(s if len(s) <= n else s[: n - 3] + "...", ensure_ascii=False)


def similarity(a: str, b: str) -> float:
    """Cosine similarity of the normalised, mean-pooled MiniLM-L6 embeddings of `a` and `b`."""
    from promptc.embed import embed

    va, vb = embed([a, b])
    return float((va @ vb).item())


def runtime_for(tests: list[Any], judge_backend: Any, cache: Any) -> Runtime | None:
    """A Runtime when the tests call judge() or similar(); a UsageError when judge() has no model."""
    uses_judge = uses(tests, ("judge",))
    if uses_judge and judge_backend is None:
        raise UsageError("the tests call judge(), which needs a judge model", hint="give --judge-model SPEC")
    if not uses_judge and not uses(tests, ("similar",)):
        return None
    return Runtime(judge_backend, cache, uses_judge)


def paraphraser(teacher: Any, cache: Any) -> Callable[[list[str]], list[str]]:
    """Paraphrases through the teacher (greedy, cached); a failed call keeps the text as it was."""
    decoding = Decoding(max_new_tokens=256)

    def run(texts: list[str]) -> list[str]:
        reqs = [Request([{"role": "system", "content": PARAPHRASE_SYSTEM}, {"role": "user", "content": t}],
                        f"{PARAPHRASE_SYSTEM}\n\n{t}\n", ir.StrT()) for t in texts]
        out = []
        for t, g in zip(texts, generate(teacher, reqs, decoding, cache)):
            out.append(g.text.strip() if not g.error and g.text.strip() else t)
        return out

    return run
