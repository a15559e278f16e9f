"""`promptc optimize`: search shots (which and in what order) and the declared system/prompt variants
of a text target, maximising the pass rate on a dev split drawn from the examples (never the tests).

Unlike DSPy's BootstrapFewShot, which runs a teacher program over the training set and keeps the traces
whose outputs pass a metric as demonstrations, and MIPRO, which also proposes new instructions with an LM
and searches instruction x demonstration combinations with a Bayesian optimiser, this search only
recombines what the program author declared: labelled examples as shots, and the named variants. It is
a seeded local search (random restarts plus one-change moves), so a budget and a seed reproduce it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from promptc import ir
from promptc.errors import UsageError


@dataclass(frozen=True)
class Config:
    shots: tuple[int, ...]  # indices into the candidate pool, in prompt order
    system_variant: str | None
    prompt_variant: str | None

    def describe(self, pool: list[ir.Example]) -> dict[str, Any]:
        return {"shots": [pool[i].origin.rsplit("/", 1)[-1] for i in self.shots],
                "system_variant": self.system_variant, "prompt_variant": self.prompt_variant}


@dataclass
class SearchResult:
    best: Config
    best_score: float
    baseline: Config
    baseline_score: float
    log: list[dict[str, Any]] = field(default_factory=list)
    pool: list[ir.Example] = field(default_factory=list)
    dev: list[ir.Example] = field(default_factory=list)


def split_dev(examples: list[ir.Example], share: float, seed: int) -> tuple[list[ir.Example], list[ir.Example]]:
    """(shot pool, dev set): the seeded, content-hashed split of the examples."""
    from promptc.splits import seeded_split

    pool, dev = seeded_split(examples, share, seed, lambda ex: [ex.input, ex.output])
    return pool, dev


def optimize(program: ir.Program, target: str, backend, *, budget: int = 20, seed: int = 0, dev_share: float = 0.3,
             cache=None, decoding=None, progress=None) -> SearchResult:
    from promptc.execution import run_requests
    from promptc.models import Decoding
    from promptc.targets.text.prompt import compile_text_target
    from promptc.testing.suite import judge

    t = program.target(target, kind="text")
    task = program.tasks[t.task]
    examples = program.without_test_inputs(task.name, task.examples, lambda ex: ex.input)
    if len(examples) < 2:
        raise UsageError("optimize needs at least two examples (a shot pool and a dev split)")
    pool, dev = split_dev(examples, dev_share, seed)
    k = min(t.options.get("shots", 0) or 2, len(pool))
    systems = [v.name for v in task.system] or [None]
    prompts = [v.name for v in task.prompt]
    dec = decoding or Decoding(max_new_tokens=t.options.get("max_new_tokens", 256))
    scores: dict[Config, float] = {}
    result = SearchResult(Config((), None, None), 0.0, Config((), None, None), 0.0, pool=pool, dev=dev)

    def score(cfg: Config) -> float:
        if cfg in scores:
            return scores[cfg]
        opts = {**t.options, "system_variant": cfg.system_variant, "prompt_variant": cfg.prompt_variant,
                "select": "first", "shots": len(cfg.shots)}
        prompt = compile_text_target(program, task.name, opts, explicit_shots=[pool[i] for i in cfg.shots])
        inputs = [e.input for e in dev]
        from promptc.models.base import Request

        reqs = [Request(prompt.render(i, "chat"), prompt.render(i, "plain"), task.output) for i in inputs]
        res = run_requests(backend, reqs, inputs, dec, cache)
        passed = 0
        for e, r in zip(dev, res):
            s = judge(task, e.input, r, (), "check")
            passed += s.passed and s.output == e.output
        scores[cfg] = passed / len(dev)
        result.log.append({"evaluation": len(scores), **cfg.describe(pool), "dev_pass_rate": scores[cfg]})
        if progress:
            progress(f"evaluated {len(scores)}/{budget}: dev pass rate {scores[cfg]:.2f}")
        return scores[cfg]

    rng = random.Random(seed)
    from promptc.targets.text.prompt import select_shots

    declared = t.options.get("select", "first")
    picked = select_shots(pool, task, k, declared if declared != "similar" else "first", t.options.get("seed", 0))
    # the baseline is the target as declared: its own shot selection, its own variants
    baseline = Config(tuple(pool.index(e) for e in picked), t.options.get("system_variant") or systems[0],
                      t.options.get("prompt_variant") or prompts[0])
    best, best_score = baseline, score(baseline)
    result.baseline, result.baseline_score = baseline, best_score

    def neighbour(cfg: Config) -> Config:
        moves = ["swap_in", "reorder", "system", "prompt"]
        move = rng.choice(moves)
        shots = list(cfg.shots)
        if move == "swap_in" and len(pool) > len(shots) and shots:
            unused = [i for i in range(len(pool)) if i not in shots]
            shots[rng.randrange(len(shots))] = rng.choice(unused)
        elif move == "reorder" and len(shots) > 1:
            a, b = rng.sample(range(len(shots)), 2)
            shots[a], shots[b] = shots[b], shots[a]
        elif move == "system" and len(systems) > 1:
            return Config(cfg.shots, rng.choice([s for s in systems if s != cfg.system_variant]), cfg.prompt_variant)
        elif move == "prompt" and len(prompts) > 1:
            return Config(cfg.shots, cfg.system_variant, rng.choice([p for p in prompts if p != cfg.prompt_variant]))
        return Config(tuple(shots), cfg.system_variant, cfg.prompt_variant)

    def random_config() -> Config:
        return Config(tuple(rng.sample(range(len(pool)), k)), rng.choice(systems), rng.choice(prompts))

    stale = 0
    attempts = 0
    while len(scores) < budget and attempts < budget * 50 and best_score < 1.0:
        attempts += 1
        # random restarts while the local moves stop paying off
        cand = random_config() if stale >= 3 else neighbour(best)
        if cand in scores:
            stale += 1
            continue
        s = score(cand)
        if s > best_score:
            best, best_score, stale = cand, s, 0
        else:
            stale += 1
    result.best, result.best_score = best, best_score
    return result


def write_optimized(program: ir.Program, target: str, result: SearchResult, out: str | Path, *, budget: int,
                    seed: int, model: str) -> Path:
    """Compile the winning configuration into a text artifact whose manifest records the search."""
    cfg = result.best
    opts = {"system_variant": cfg.system_variant, "prompt_variant": cfg.prompt_variant}
    shots = [result.pool[i] for i in cfg.shots]
    record = {"model": model, "budget": budget, "seed": seed, "dev_size": len(result.dev),
              "pool_size": len(result.pool), "winner": cfg.describe(result.pool),
              "dev_pass_rate": result.best_score, "baseline": result.baseline.describe(result.pool),
              "baseline_dev_pass_rate": result.baseline_score, "search_log": result.log}
    from promptc.targets.text.artifact import write_text_artifact
    from promptc.targets.text.prompt import compile_text_target

    t = program.target(target, kind="text")
    t = replace(t, options={**t.options, **opts})
    prompt = compile_text_target(program, t.task, t.options, shots)
    return write_text_artifact(program, t, Path(out), prompt=prompt, extra={"optimized": record})
