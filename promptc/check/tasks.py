"""Check stage, tasks: parameters, the output type, system and prompt texts, constraints and examples."""

from __future__ import annotations

from promptc import ast, codes, ir
from promptc.check import datasets, examples, templates, types, values
from promptc.check.context import CheckedExample, CheckedTask, Context
from promptc.expr import to_source
from promptc.source import Span


def check_tasks(cx: Context) -> None:
    seen: dict[str, Span] = {}
    for task in cx.program.of(ast.TaskDecl):
        if cx.dup(seen, task.name, "task"):
            continue
        cx.out.tasks[task.name.name] = check_task(cx, task)


def check_task(cx: Context, task: ast.TaskDecl) -> CheckedTask:
    params = _params(cx, task)
    out_t = types.type_use(cx, task.returns)
    types.warn_unenforceable(cx, out_t, set())
    env: dict[str, ir.Type] = {p.name: p.type for p in params}
    ct = CheckedTask(task, tuple(params), out_t, {**env, "output": out_t})
    _texts(cx, task, env)
    _constraints(cx, ct)
    _inline_examples(cx, ct)
    for ef in task.example_files:
        examples.examples_file(cx, ct, ef)
    return ct


def _params(cx: Context, task: ast.TaskDecl) -> list[ir.Param]:
    params: list[ir.Param] = []
    seen: dict[str, Span] = {}
    for prm in task.params:
        t = types.type_use(cx, prm.type)
        if prm.name.name == "output":
            cx.d.error(codes.DUPLICATE_NAME, "'output' is reserved for the task's output", prm.name.span,
                       hint="rename the parameter")
            continue
        if not cx.dup(seen, prm.name, "parameter"):
            params.append(ir.Param(prm.name.name, t))
    return params


def _texts(cx: Context, task: ast.TaskDecl, env: dict[str, ir.Type]) -> None:
    """The system and prompt texts (with optional variants): one default each, and templates that check."""
    since = cx.d.checkpoint()
    used: set[str] = set()  # names the templates mention, from the one parse check_template makes
    for kind in ("system", "prompt"):
        items = task.texts(kind)
        vseen: dict[str, Span] = {}
        defaults = [i for i in items if i.variant is None]
        if len(defaults) > 1:
            cx.d.error(codes.DUPLICATE_TASK_ITEM, f"task '{task.name.name}' has more than one {kind}", defaults[1].span,
                       hint=f'name alternatives: {kind} variant "name" """..."""')
        for i in items:
            if i.variant is not None:
                cx.dup(vseen, ast.Ident(i.variant, i.span), f"{kind} variant")
            used |= templates.names(templates.check_template(cx, i.text, env))
    if not task.texts("prompt"):
        cx.d.error(codes.NO_PROMPT, f"task '{task.name.name}' has no prompt", task.name.span,
                   hint='add a template: prompt """ ... {{ input }} ... """')
    elif since.ok:
        _unused_inputs(cx, task, env, used)


def _unused_inputs(cx: Context, task: ast.TaskDecl, env: dict[str, ir.Type], used: set[str]) -> None:
    for prm in task.params:
        if prm.name.name not in used and prm.name.name in env:
            cx.d.warning(codes.UNUSED_INPUT, f"input '{prm.name.name}' is never used in the prompt", prm.name.span,
                         hint=f"reference it as {{{{ {prm.name.name} }}}}, or remove it")


def _constraints(cx: Context, ct: CheckedTask) -> None:
    seen: dict[str, Span] = {}
    for c in ct.decl.constraints:
        if cx.dup(seen, c.name, "constraint"):
            continue
        node = cx.condition(ct.env, c.expr)
        if node is not None and datasets.test_only_functions(cx, node, c.expr.span):
            ct.constraints.append(ir.Constraint(c.name.name, c.description, node, to_source(node), str(c.span)))


def _inline_examples(cx: Context, ct: CheckedTask) -> None:
    in_t = ct.input_type
    for ex in ct.decl.examples:
        since = cx.d.checkpoint()
        inp = values.value(cx, ex.input, in_t)
        outv = values.value(cx, ex.output, ct.output)
        if since.ok:
            ce = CheckedExample(ir.Example(inp, outv, str(ex.span), ex.name), ex.span)
            examples.example_constraints(cx, ct, ce, ex.output.span if ex.output is not None else ex.span)
            ct.examples.append(ce)
