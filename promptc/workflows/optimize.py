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


class _Search:
    """The seeded local search: its state, the scoring of one configuration, and the moves."""

    def __init__(self, program: ir.Program, target: ir.Target, backend: Any, *, budget: int, seed: int,
                 dev_share: float, cache: Any, decoding: Any, progress: Any):
        from promptc.models import Decoding

        self.program, self.target, self.backend = program, target, backend
        self.task = program.tasks[target.task]
        examples = program.without_test_inputs(self.task.name, self.task.examples, lambda ex: ex.input)
        if len(examples) < 2:
            raise UsageError("optimize needs at least two examples (a shot pool and a dev split)")
        self.pool, self.dev = split_dev(examples, dev_share, seed)
        self.k = min(target.options.get("shots", 0) or 2, len(self.pool))
        self.systems: list[str | None] = [v.name for v in self.task.system] or [None]
        self.prompts: list[str | None] = [v.name for v in self.task.prompt]
        self.decoding = decoding or Decoding(max_new_tokens=target.options.get("max_new_tokens", 256))
        self.budget, self.cache, self.progress = budget, cache, progress
        self.rng = random.Random(seed)
        self.scores: dict[Config, float] = {}
        self.log: list[dict[str, Any]] = []

    def score(self, cfg: Config) -> float:
        """The dev pass rate of one configuration (each is evaluated once)."""
        from promptc.execution import run_requests, text_requests
        from promptc.targets.text.prompt import compile_text_target
        from promptc.testing.suite import judge

        if cfg in self.scores:
            return self.scores[cfg]
        opts = {**self.target.options, "system_variant": cfg.system_variant, "prompt_variant": cfg.prompt_variant,
                "select": "first", "shots": len(cfg.shots)}
        prompt = compile_text_target(self.program, self.task.name, opts,
                                     explicit_shots=[self.pool[i] for i in cfg.shots])
        inputs = [e.input for e in self.dev]
        results = run_requests(self.backend, text_requests(prompt, inputs), inputs, self.decoding, self.cache)
        passed = 0
        for e, r in zip(self.dev, results):
            s = judge(self.task, e.input, r, (), "check")
            passed += s.passed and s.output == e.output
        self.scores[cfg] = passed / len(self.dev)
        self.log.append({"evaluation": len(self.scores), **cfg.describe(self.pool), "dev_pass_rate": self.scores[cfg]})
        if self.progress:
            self.progress(f"evaluated {len(self.scores)}/{self.budget}: dev pass rate {self.scores[cfg]:.2f}")
        return self.scores[cfg]

    def baseline(self) -> Config:
        """The target as declared: its own shot selection, its own variants."""
        from promptc.targets.text.prompt import select_shots

        opts = self.target.options
        declared = opts.get("select", "first")
        picked = select_shots(self.pool, self.task, self.k, declared if declared != "similar" else "first",
                              opts.get("seed", 0))
        return Config(tuple(self.pool.index(e) for e in picked), opts.get("system_variant") or self.systems[0],
                      opts.get("prompt_variant") or self.prompts[0])

    def neighbour(self, cfg: Config) -> Config:
        """One change: swap a shot in, reorder two shots, or switch a variant."""
        rng, shots = self.rng, list(cfg.shots)
        move = rng.choice(["swap_in", "reorder", "system", "prompt"])
        if move == "swap_in" and len(self.pool) > len(shots) and shots:
            unused = [i for i in range(len(self.pool)) if i not in shots]
            shots[rng.randrange(len(shots))] = rng.choice(unused)
        elif move == "reorder" and len(shots) > 1:
            a, b = rng.sample(range(len(shots)), 2)
            shots[a], shots[b] = shots[b], shots[a]
        elif move == "system" and len(self.systems) > 1:
            return Config(cfg.shots, rng.choice([s for s in self.systems if s != cfg.system_variant]),
                          cfg.prompt_variant)
        elif move == "prompt" and len(self.prompts) > 1:
            return Config(cfg.shots, cfg.system_variant,
                          rng.choice([p for p in self.prompts if p != cfg.prompt_variant]))
        return Config(tuple(shots), cfg.system_variant, cfg.prompt_variant)

    def random_config(self) -> Config:
        return Config(tuple(self.rng.sample(range(len(self.pool)), self.k)), self.rng.choice(self.systems),
                      self.rng.choice(self.prompts))

    def run(self) -> SearchResult:
        baseline = self.baseline()
        best, best_score = baseline, self.score(baseline)
        result = SearchResult(best, best_score, baseline, best_score, self.log, self.pool, self.dev)
        stale = attempts = 0
        while len(self.scores) < self.budget and attempts < self.budget * 50 and best_score < 1.0:
            attempts += 1
            # random restarts while the local moves stop paying off
            cand = self.random_config() if stale >= 3 else self.neighbour(best)
            if cand in self.scores:
                stale += 1
                continue
            s = self.score(cand)
            if s > best_score:
                best, best_score, stale = cand, s, 0
            else:
                stale += 1
        result.best, result.best_score = best, best_score
        return result


def optimize(program: ir.Program, target: str, backend: Any, *, budget: int = 20, seed: int = 0,
             dev_share: float = 0.3, cache: Any = None, decoding: Any = None, progress: Any = None) -> SearchResult:
    """Search shots and declared variants of a text target for the best dev pass rate within `budget`
    evaluations; the same seed and budget reproduce the search."""
    search = _Search(program, program.target(target, kind="text"), backend, budget=budget, seed=seed,
                     dev_share=dev_share, cache=cache, decoding=decoding, progress=progress)
    return search.run()


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
