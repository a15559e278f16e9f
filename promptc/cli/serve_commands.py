"""CLI: `serve`, `export` and `artifacts`, and the `openai:` backend's options shared by run, test and
compare (timeouts, retries, rate limits, prices and a cost budget) with the tokens-and-cost line they
print."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from promptc.cli.output import EXIT_DIAGNOSTICS, EXIT_OK
from promptc.errors import UsageError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


# ------------------------------------------------------------------ openai: options and spend
def http_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("openai: backend")
    g.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="seconds for one attempt, connect to last byte (default 60)")
    g.add_argument("--retries", type=int, default=4, metavar="N", help="retries on 429, 5xx and timeouts (default 4)")
    g.add_argument("--rpm", type=float, metavar="N", help="at most N requests per minute")
    g.add_argument("--tpm", type=float, metavar="N", help="at most N tokens per minute")
    g.add_argument("--prices", metavar="FILE.json",
                   help='price table {"model": {"input": USD, "output": USD}} per million tokens '
                        "(default: $PROMPTC_PRICES)")
    g.add_argument("--max-cost", type=float, metavar="USD", help="send no request that could take the cost over USD")


def http_options(args: argparse.Namespace) -> dict[str, Any]:
    """OpenAIBackend options from the CLI flags (absent flags keep the backend's defaults)."""
    if getattr(args, "retries", None) is not None and args.retries < 0:
        raise UsageError("--retries must be 0 or more")
    if getattr(args, "max_cost", None) is not None and args.max_cost <= 0:
        raise UsageError("--max-cost must be positive")
    names = {"timeout": "timeout", "retries": "retries", "rpm": "rpm", "tpm": "tpm", "prices": "prices",
             "max_cost": "max_cost"}
    return {k: getattr(args, a) for a, k in names.items() if getattr(args, a, None) is not None}


def print_spend(backends: list[Any], file=None) -> None:
    """One line per HTTP backend: requests, tokens and (when priced) cost, on stderr."""
    out = file or sys.stderr
    for b in backends:
        spend = getattr(b, "spend", None)
        if spend is None or not (spend.requests or spend.refused):
            continue
        cost = f"; cost ${spend.cost:.6f}" if b.price() is not None else \
            f"; cost unknown (no price for '{b.model}': --prices)"
        refused = f"; {spend.refused} not sent (--max-cost ${b.max_cost:g})" if spend.refused else ""
        print(f"promptc: {b.spec.split('@')[0]}: {spend.requests} requests, {spend.prompt_tokens:,} prompt + "
              f"{spend.completion_tokens:,} completion tokens{cost}{refused}", file=out)


# ------------------------------------------------------------------ serve
def _load_ir(path: str):
    """A program's IR; its errors raise DiagnosticError (exit 1), its warnings are printed."""
    from promptc.cli.output import emit_diagnostics
    from promptc.compiler import compile_file
    from promptc.errors import DiagnosticError

    result = compile_file(path)
    if result.program is None:
        raise DiagnosticError(result.diagnostics)
    warnings = [d for d in result.diagnostics if not d.is_error]
    if warnings:
        emit_diagnostics(warnings, "text")
    return result.program


def regate(directory: str, program: Any, manifest: dict[str, Any]) -> str:
    """An unsigned tuned artifact's gate verdict cannot be trusted (a hand edit of its manifest leaves no
    trace), so `promptc serve` runs the program's tests on it again and reports that verdict, never the
    recorded one; a failing artifact is served with a warning, as a failed one always was. Returns the
    verdict: passed or failed."""
    from promptc.execution import artifact_subject
    from promptc.testing.suite import run_suite

    task = program.tasks[(manifest.get("task") or {}).get("name")]
    report = run_suite(program, task, artifact_subject(directory, program, task), cache=None)
    need = float((manifest.get("options") or {}).get("min_pass", 1.0))
    share = report.passed / max(1, len(report.results) - report.skipped)
    verdict = "passed" if share >= need - 1e-12 else "failed"
    print(f"promptc: artifact {directory} is unsigned, so its gate ran again instead of being read: "
          f"{report.summary_line()} -> {verdict}", file=sys.stderr)
    if verdict == "failed":
        failing = ", ".join(r.name for r in report.results if r.status == "failed")
        print(f"promptc: warning: artifact {directory} fails its gate now ({failing})", file=sys.stderr)
    return verdict


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    from promptc.serving.app import ServeOptions
    from promptc.serving.server import run
    from promptc.serving.subjects import build_registry

    if not (args.model or args.artifact):
        raise UsageError("nothing to serve", hint="give --model SPEC, --target FILE:NAME or --artifact DIR")
    if args.model and args.model.startswith("openai:"):
        raise UsageError("serve runs local models: give hf:<dir or hub id> or tiny-causal")
    key = None
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise UsageError(f"--api-key-env {args.api_key_env}: the variable is not set or empty")
    elif args.host not in LOCAL_HOSTS:
        print(f"promptc: warning: serving on {args.host} without authentication; anyone who can reach it can "
              "use it (set --api-key-env VAR)", file=sys.stderr)
    for name, v, lo in (("--max-batch", args.max_batch, 1), ("--max-body", args.max_body, 1024),
                        ("--request-timeout", args.request_timeout, 0.001), ("--body-timeout", args.body_timeout, 0.001),
                        ("--header-timeout", args.header_timeout, 0.001), ("--graceful-timeout", args.graceful_timeout, 0)):
        if v < lo:
            raise UsageError(f"{name} must be at least {lo}")
    programs: dict[str, Any] = {}

    def program(path: str):
        if path not in programs:
            programs[path] = _load_ir(path)
        return programs[path]

    targets = []
    for spec in args.target or []:
        path, sep, name = spec.rpartition(":")
        if not sep or not path or not name:
            raise UsageError(f"--target {spec}: use FILE:NAME (e.g. programs/route.prompt:route_text)")
        targets.append((program(path), name))
    for path in args.program or []:
        program(path)
    text_artifacts: list[tuple[str, Any]] = []  # (dir, program)
    tuned: list[tuple[str, Any]] = []
    for d in args.artifact or []:
        from promptc.artifacts import read_manifest

        m = read_manifest(d)
        from promptc.signing import check_before_serving

        integ = check_before_serving(d, m, args.verify_key)
        want = (m.get("program") or {}).get("name")
        match = [p for p in programs.values() if p.name == want]
        if not match:
            raise UsageError(f"artifact {d} was built from program '{want}'", hint="give its source with --program FILE")
        if m.get("kind") == "tune" and integ.state != "signed":
            regate(d, match[0], m)
        (text_artifacts if m.get("kind") == "text" else tuned).append((d, match[0]))
    reg = build_registry(model=args.model, targets=targets, text_artifacts=text_artifacts, tuned=tuned,
                         window=args.batch_window_ms / 1000.0, max_batch=args.max_batch)
    opts = ServeOptions(max_body=args.max_body, request_timeout=args.request_timeout, api_key=key,
                        body_timeout=args.body_timeout, header_timeout=args.header_timeout,
                        graceful_timeout=args.graceful_timeout)

    def announce(url: str, limits: str) -> None:
        print(f"serving {', '.join(reg.subjects)} at {url} (OpenAI Chat Completions; typed tasks at "
              f"{url}/tasks/NAME; docs at {url[:-3]}/docs); Ctrl-C or SIGTERM drains and stops", flush=True)
        print(f"promptc serve: {limits}", flush=True)

    if not run(reg, args.host, args.port, opts, announce):
        print(f"promptc: some requests did not finish within --graceful-timeout {args.graceful_timeout:g} s and "
              "got a 503", file=sys.stderr)
        return EXIT_DIAGNOSTICS
    return EXIT_OK


# ------------------------------------------------------------------ export and artifacts
def cmd_export(args: argparse.Namespace) -> int:
    from promptc.serving.export import export

    out = export(args.artifact, args.format, args.output, name=args.name)
    print(f"wrote {out.directory}/ ({', '.join(out.files)})")
    if out.command:
        print(f"serve it with:\n  {out.command}")
    return EXIT_OK


def cmd_artifacts(args: argparse.Namespace) -> int:
    from promptc.serving import catalog

    if args.action in ("sign", "verify") and len(args.dirs) != 1:
        raise UsageError(f"`artifacts {args.action}` takes one artifact directory")
    if args.action == "sign":
        import os

        from promptc.signing import sign

        if not args.key:
            raise UsageError("`artifacts sign` needs --key PRIVATE.pem (an elliptic-curve private key)",
                             hint="make one: openssl ecparam -name prime256v1 -genkey -noout -out key.pem")
        password = None
        if args.password_env:
            password = os.environ.get(args.password_env)
            if not password:
                raise UsageError(f"--password-env {args.password_env}: the variable is not set or empty")
        from promptc.signing import short

        result = sign(args.dirs[0], args.key, password)
        print(f"signed {args.dirs[0]} with key {short(result.key)} (wrote signature.sig and signature.pub)")
    elif args.action == "verify":
        from promptc.artifacts import read_manifest
        from promptc.signing import gate, verify

        result = verify(args.dirs[0], args.key)
        print(f"{args.dirs[0]}: {result.words()}; gate: {gate(read_manifest(args.dirs[0]), result)}")
    elif args.action == "list":
        print(catalog.list_text(args.dirs, args.format, args.key))
    elif args.action == "show":
        if len(args.dirs) != 1:
            raise UsageError("`artifacts show` takes one artifact directory")
        print(catalog.show_text(args.dirs[0], args.format, args.key))
    else:
        if len(args.dirs) != 2:
            raise UsageError("`artifacts diff` takes two artifact directories")
        print(catalog.diff_text(args.dirs[0], args.dirs[1], args.format))
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    sv = sub.add_parser(
        "serve", help="serve models, targets and artifacts over the OpenAI API and typed task endpoints",
        description="An OpenAI-compatible server (Chat Completions with streaming, n, stop, json_schema as "
                    "constrained decoding) for a local model, text targets and compiled text artifacts on it, and "
                    "tuned artifacts of every kind, plus a typed endpoint per task (POST /v1/tasks/NAME, OpenAPI "
                    "docs at /docs), /health and /metrics. Requests are batched dynamically.")
    sv.add_argument("--model", metavar="SPEC", help="hf:<dir or hub id> or tiny-causal (served as itself, and the "
                                                    "model text targets and text artifacts run on)")
    sv.add_argument("--target", action="append", metavar="FILE:NAME", help="a text target to serve (repeatable)")
    sv.add_argument("--artifact", action="append", metavar="DIR", help="an artifact to serve (repeatable)")
    sv.add_argument("--program", action="append", metavar="FILE", help="the program an --artifact was built from")
    sv.add_argument("--verify-key", metavar="PUBLIC.pem",
                    help="refuse an --artifact not signed by this key (default: $PROMPTC_TRUSTED_KEY; without "
                         "either, a signed artifact is checked against the key it carries)")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--api-key-env", metavar="VAR", help="require Authorization: Bearer $VAR on /v1 and /metrics")
    sv.add_argument("--max-batch", type=int, default=32, metavar="N", help="most requests in one batch (default 32)")
    sv.add_argument("--batch-window-ms", type=float, default=0.0, metavar="MS",
                    help="how long a batch waits for more requests (default 0: requests that arrive while a "
                         "batch runs form the next one, so an idle server adds no wait)")
    sv.add_argument("--max-body", type=int, default=2 << 20, metavar="BYTES",
                    help="largest request body; bigger ones get 413 unread (default 2 MiB)")
    sv.add_argument("--request-timeout", type=float, default=120.0, metavar="S",
                    help="seconds a request may take (default 120)")
    sv.add_argument("--body-timeout", type=float, default=30.0, metavar="S",
                    help="seconds to receive a request body; a client that stalls mid-body gets 408 (default 30)")
    sv.add_argument("--header-timeout", type=float, default=10.0, metavar="S",
                    help="seconds a connection has to send a complete request head, from its accept or from the "
                         "first byte after a keep-alive wait; slower ones are closed (default 10)")
    sv.add_argument("--graceful-timeout", type=float, default=30.0, metavar="S",
                    help="on SIGTERM or Ctrl-C, seconds work in flight may take to finish; what is left then gets "
                         "a 503 (default 30)")
    sv.set_defaults(func=cmd_serve)

    ex = sub.add_parser("export", help="export a tuned artifact as a plain peft adapter or for vLLM",
                        description="Write a tuned artifact's adapter in the layout peft (PeftModel.from_pretrained) "
                                    "or vLLM (vllm serve --enable-lora --lora-modules) loads, with its model card.")
    ex.add_argument("artifact", metavar="ARTIFACT")
    ex.add_argument("--format", required=True, choices=("peft", "vllm"))
    ex.add_argument("-o", "--output", required=True, metavar="DIR")
    ex.add_argument("--name", metavar="NAME", help="the adapter's name in the vLLM command line (default: target)")
    ex.set_defaults(func=cmd_export)

    ar = sub.add_parser("artifacts", help="list, show, diff, sign and verify artifacts: versions, lineage, gate "
                                          "results, signatures",
                        description="`list DIR...` lists artifacts (a directory of artifacts is searched one level "
                                    "deep); `show DIR` prints one's model card; `diff A B` says what changed; "
                                    "`sign DIR --key PRIVATE.pem` signs the manifest and every file (model-signing, "
                                    "an elliptic-curve key, offline); `verify DIR [--key PUBLIC.pem]` checks it. "
                                    "list and show say signed, unsigned or MODIFIED beside the gate, and show a "
                                    "gate as passed only for a signed artifact (docs/security.md).")
    ar.add_argument("action", choices=("list", "show", "diff", "sign", "verify"))
    ar.add_argument("dirs", nargs="+", metavar="DIR")
    ar.add_argument("--format", choices=("text", "json"), default="text")
    ar.add_argument("--key", metavar="PEM",
                    help="sign: the private key; verify, list, show: the public key that must have signed "
                         "(default: $PROMPTC_TRUSTED_KEY, else the key the artifact carries)")
    ar.add_argument("--password-env", metavar="VAR", help="sign: the variable holding the private key's password")
    ar.set_defaults(func=cmd_artifacts)
