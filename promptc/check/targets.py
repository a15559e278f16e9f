"""Check stage, targets: `target KIND NAME for TASK { key = value }` against the option registry."""

from __future__ import annotations

from typing import Any

from promptc import ast, codes, ir
from promptc.check.context import Context
from promptc.diagnostics import did_you_mean
from promptc.expr import literal_hint
from promptc.options import OPTIONS, TUNE_METHODS, OptionSpec
from promptc.source import Span

_BAD = object()
_KIND_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
               "list[str]": "a list of strings"}


def check_targets(cx: Context) -> None:
    seen: dict[str, Span] = {}
    for tg in cx.program.of(ast.TargetDecl):
        dup = cx.dup(seen, tg.name, "target")
        kind = tg.kind.name
        if kind not in OPTIONS:
            cx.d.error(codes.UNKNOWN_TARGET_KIND, f"unknown target kind '{kind}'", tg.kind.span,
                       hint=did_you_mean(kind, OPTIONS, "target kinds"))
            continue
        if tg.task.name not in cx.out.tasks:
            cx.d.error(codes.UNKNOWN_TASK, f"unknown task '{tg.task.name}'", tg.task.span,
                       hint=did_you_mean(tg.task.name, cx.task_names()))
        opts = options(cx, kind, tg.options)
        if opts is not None and kind == "text" and tg.task.name in cx.out.tasks:
            _check_variants(cx, tg, opts)
        if opts is not None and not dup:
            cx.out.targets[tg.name.name] = ir.Target(kind, tg.name.name, tg.task.name, opts)
        if opts is not None and kind == "tune" and tg.task.name in cx.out.tasks:
            _check_heads(cx, tg, opts)


def _check_variants(cx: Context, tg: ast.TargetDecl, opts: dict[str, Any]) -> None:
    task = cx.out.tasks[tg.task.name].decl
    for kind in ("system", "prompt"):
        want = opts.get(f"{kind}_variant")
        if want is None:
            continue
        names = [i.variant for i in task.texts(kind) if i.variant is not None]
        if want not in names:
            opt = next(o for o in tg.options if o.key.name == f"{kind}_variant")
            cx.d.error(codes.BAD_OPTION_VALUE, f"task '{task.name.name}' has no {kind} variant '{want}'",
                       opt.value.span, hint=did_you_mean(want, names, "variants") if names else
                       f'declare one: {kind} variant "{want}" "..."')


def _check_heads(cx: Context, tg: ast.TargetDecl, opts: dict[str, Any]) -> None:
    """A tune target on an encoder base (known without loading it) must have an output its heads can
    serve: the refusal `promptc tune` would make, here at the target, before any model loads."""
    from promptc.heads import Unservable, known_kind, plan, unseen
    from promptc.options import TUNE_OPTIONS

    base = opts.get("base", TUNE_OPTIONS["base"].default)
    family = opts.get("family", "auto")
    kind = known_kind(base, cx.src.path)
    encoder = kind == "encoder"
    fam = next((o.value.span for o in tg.options if o.key.name == "family"), tg.name.span)
    if family == "classifier" and kind == "causal":
        cx.d.error(codes.FAMILY_NOT_FOR_BASE, f'family = "classifier" needs an encoder base, and \'{base}\' is a causal '
                   "LM", fam, hint='use an encoder base (base = "minilm", or a BERT-like directory), or leave family '
                   'unset ("auto")')
        return
    if family == "causal" and encoder:
        cx.d.error(codes.FAMILY_NOT_FOR_BASE, f"family = \"causal\" generates text, and '{base}' is an encoder, which "
                   "cannot", fam, hint='leave family unset ("auto") to train heads on the encoder, or use a causal '
                   "LM base (a hub id or a local directory)")
        return
    if family == "causal" or not (family == "classifier" or encoder):
        return
    task = cx.out.tasks[tg.task.name]
    outputs = [ce.example.output for ce in task.examples]
    if not outputs:  # the data decides reply sets and spans; with none, `promptc tune` says it has no examples
        return
    at = next((o.value.span for o in tg.options if o.key.name in ("base", "family")), tg.name.span)
    try:
        heads = plan(task.output, outputs, [ce.example.input for ce in task.examples])
    except Unservable as e:
        what = f"base '{base}' is an encoder" if encoder else 'family = "classifier" is an encoder'
        cx.d.error(codes.ENCODER_CANNOT_SERVE, f"{what}, which serves only finite outputs, and field '{e.field}' of "
                   f"task '{tg.task.name}' is not one: {e.why}", at,
                   hint=(e.hint + ", " if e.hint else "") + "or tune on a causal LM base (a hub id or a local "
                   "directory) that generates it")
        return
    missing = unseen(heads, outputs)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        cx.d.warning(codes.UNSEEN_LABEL, f"no example of task '{tg.task.name}' has {shown}: the tuned heads "
                     "never learn to predict it", at, hint="add examples that have it, or leave it out of the type")


def options(cx: Context, kind: str, opts: tuple[ast.Option, ...]) -> dict[str, Any] | None:
    """A target's options as values (defaults are filled in later, by lower); None if any is wrong."""
    specs = OPTIONS[kind]
    since = cx.d.checkpoint()
    vals: dict[str, Any] = {}
    spans: dict[str, ast.Option] = {}
    oseen: dict[str, Span] = {}
    for o in opts:
        key = o.key.name
        if cx.dup(oseen, o.key, "option"):
            continue
        spec = specs.get(key)
        if spec is None:
            cx.d.error(codes.UNKNOWN_OPTION, f"unknown {kind} target option '{key}'", o.key.span,
                       hint=did_you_mean(key, specs, "options"))
            continue
        v = _option_value(cx, spec, o.value)
        if v is not _BAD:
            vals[key] = v
            spans[key] = o
    if kind == "tune":
        _tune_options(cx, specs, vals, spans)
    return vals if since.ok else None


def _tune_options(cx: Context, specs: dict[str, OptionSpec], vals: dict[str, Any],
                  spans: dict[str, ast.Option]) -> None:
    """Rules across tune options: an option must apply to the method; init = "text" needs init_text."""
    method = vals.get("method", specs["method"].default)
    for key, o in spans.items():
        spec = specs[key]
        # with method = "auto" the method is picked when tuning starts, which checks the options then
        if spec.methods is not None and method != "auto" and method not in spec.methods:
            cx.d.error(codes.OPTION_NOT_FOR_METHOD, f"option '{key}' does not apply to method '{method}'", o.key.span,
                       hint=f"'{key}' applies to: {', '.join(spec.methods)}")
    if vals.get("init") == "text" and not vals.get("init_text"):
        cx.d.error(codes.BAD_OPTION_VALUE, 'init = "text" needs init_text = "..."', spans["init"].value.span)


def _option_value(cx: Context, spec: OptionSpec, v: ast.Value) -> Any:
    val = _typed_option(spec, v)
    if val is _BAD:
        if spec.name == "method" and isinstance(v, (ast.Literal, ast.EnumRef)):
            name = v.value if isinstance(v, ast.Literal) else v.name
            _unknown_method(cx, str(name), v.span)
            return _BAD
        hint = literal_hint(v.name) if isinstance(v, ast.EnumRef) else None
        cx.d.error(codes.BAD_OPTION_VALUE, f"option '{spec.name}' takes {_KIND_WORDS[spec.kind]}", v.span,
                   hint=hint or spec.help)
        return _BAD
    if spec.choices is not None and val not in spec.choices:
        if spec.name == "method":
            _unknown_method(cx, val, v.span)
        else:
            cx.d.error(codes.BAD_OPTION_VALUE, f"option '{spec.name}' must be one of {', '.join(map(str, spec.choices))}",
                       v.span, hint=did_you_mean(str(val), [str(c) for c in spec.choices]))
        return _BAD
    if spec.min is not None and isinstance(val, (int, float)) and val < spec.min:
        cx.d.error(codes.BAD_OPTION_VALUE, f"option '{spec.name}' must be at least {spec.min:g}", v.span)
        return _BAD
    if spec.max is not None and isinstance(val, (int, float)) and val > spec.max:
        cx.d.error(codes.BAD_OPTION_VALUE, f"option '{spec.name}' must be at most {spec.max:g}", v.span)
        return _BAD
    return val


def _typed_option(spec: OptionSpec, v: ast.Value) -> Any:
    """The option's value if it has the option's kind, else _BAD."""
    if spec.kind == "list[str]":
        if isinstance(v, ast.ListLit) and all(isinstance(i, ast.Literal) and isinstance(i.value, str)
                                              for i in v.items):
            return [i.value for i in v.items]  # type: ignore[union-attr]
        return _BAD
    if isinstance(v, ast.Literal):
        x = v.value
        if spec.kind == "str" and isinstance(x, str):
            return x
        if spec.kind == "int" and isinstance(x, int) and not isinstance(x, bool):
            return x
        if spec.kind == "float" and isinstance(x, (int, float)) and not isinstance(x, bool):
            return float(x)
        if spec.kind == "bool" and isinstance(x, bool):
            return x
        return _BAD
    if isinstance(v, ast.EnumRef) and spec.kind == "str" and spec.choices and v.name in spec.choices:
        return v.name
    return _BAD


def _unknown_method(cx: Context, name: str, span: Span) -> None:
    near = did_you_mean(name, TUNE_METHODS)
    cx.d.error(codes.UNKNOWN_METHOD, f"unknown tune method '{name}'", span,
               hint=(f"{near} " if near else "") + f"methods: {', '.join(TUNE_METHODS)}")
