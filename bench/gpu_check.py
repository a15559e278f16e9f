"""GPU check for promptc's tune target and hf: backend, self-contained (no downloads), under 5 minutes on
one GPU: LoRA and prompt tuning through `promptc tune` on a randomly initialised GPT-2-medium shape
(24 layers, 1024 wide, byte-level vocabulary) in bf16 on cuda, constrained generation on cuda through
the tuned artifact, and training steps/s and generation tokens/s against the CPU on the same shape.

Without CUDA the GPU parts are skipped (said plainly) and the same measurements run on the CPU with a
small shape, so the script is checked on any machine. Prints a compact summary; writes results.json
to $OUT when that variable is set.

Usage: python bench/gpu_check.py [--shape medium|small] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = {"medium": dict(n_embd=1024, n_layer=24, n_head=16), "small": dict(n_embd=256, n_layer=4, n_head=4)}

PROGRAM = '''
enum Color { red, green, blue }
type Pick { color: Color, count: int [ge=0, le=9], note: str [max_len=24] }
task pick(word: str) -> Pick {
  prompt "Pick a colour, a count and a note for the word {{ word }}."
  examples "pick.jsonl"
}
test pick { case "any" { input { word: "ruby" } expect output.count <= 9 } }
target tune lora for pick { method = "lora", base = "BASE", r = 16, alpha = 32, batch_size = 8,
                            val_split = 0.0, patience = 0, max_new_tokens = 64 }
target tune soft for pick { method = "prompt_tuning", base = "BASE", virtual_tokens = 16, batch_size = 8,
                            val_split = 0.0, patience = 0, max_new_tokens = 64 }
'''
WORDS = ["apple", "grass", "sky", "cherry", "leaf", "sea", "ruby", "moss", "ocean", "brick", "lime", "navy",
         "rose", "fern", "cobalt", "blood"]


def make_base(directory: Path, shape: str) -> None:
    """A random GPT-2 of the shape with promptc's offline byte-level tokenizer, saved with safetensors."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from promptc.models.tiny import SPECIALS, tiny_tokenizer

    tok = tiny_tokenizer()
    cfg = GPT2Config(vocab_size=256 + len(SPECIALS), n_positions=1024, bos_token_id=256, eos_token_id=257,
                     pad_token_id=258, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **SHAPES[shape])
    torch.manual_seed(0)
    GPT2LMHeadModel(cfg).save_pretrained(str(directory))
    tok.save_pretrained(str(directory))


def write_program(directory: Path, base: Path) -> Path:
    rows = [{"input": {"word": w}, "output": {"color": ["red", "green", "blue"][i % 3], "count": i % 10,
                                              "note": f"note {i}"}} for i, w in enumerate(WORDS)]
    (directory / "pick.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    p = directory / "pick.prompt"
    p.write_text(PROGRAM.replace("BASE", str(base)), encoding="utf-8")
    return p


def train(prog, target: str, out: Path, device: str, steps: int) -> dict:
    from promptc.workflows.tune import tune

    marks: dict[int, float] = {}

    def progress(state, row):
        if row is None:
            marks[state.step] = time.perf_counter()

    res = tune(prog.ir, target, out=out, gate=False, progress=progress, warn=None,
               overrides={"device": device, "max_steps": steps, "eval_every": 10_000})
    r = res.manifest["resources"]
    rate = (steps - 1) / (marks[steps] - marks[1]) if steps > 1 else float("nan")
    return {"target": target, "device": r["device"], "dtype": r["dtype"], "steps": steps,
            "steps_per_s": round(rate, 3), "peak_memory_mib": round((r["peak_memory"] or res.peak_rss) / 2**20),
            "estimate_mib": round(r["memory_estimate"]["total"] / 2**20),
            "trainable": res.manifest["trainable_parameters"]}


def generate(prog, artifact: Path, device: str, n: int) -> dict:
    """Constrained (JSON-schema) generation through the tuned artifact on `device`."""
    from promptc.artifacts import read_manifest
    from promptc.execution import make_decoding
    from promptc.targets.tune.artifact import load_tuned

    task = prog.ir.tasks["pick"]
    art = load_tuned(artifact, read_manifest(artifact), prog.ir, task, device=device)
    inputs = [{"word": w} for w in WORDS[:n]]
    reqs = art.requests(inputs)
    dec = make_decoding(48)
    art.backend.generate(reqs[:1], dec)  # warm-up
    t0 = time.perf_counter()
    gens = art.backend.generate(reqs, dec)
    secs = time.perf_counter() - t0
    from promptc.outputs import parse_output

    valid = sum(parse_output(task.output, g.text).ok for g in gens)
    tokens = sum(g.completion_tokens for g in gens)
    return {"device": str(next(art.backend.model.parameters()).device), "requests": n, "tokens": tokens,
            "tokens_per_s": round(tokens / secs, 1), "schema_valid": f"{valid}/{n}"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=list(SHAPES), default=None)
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()
    import torch

    import promptc

    cuda = torch.cuda.is_available()
    shape = args.shape or ("medium" if cuda else "small")
    results: dict = {"cuda": cuda, "shape": shape, "gpu": torch.cuda.get_device_name(0) if cuda else None,
                     "torch": torch.__version__, "runs": []}
    if not cuda:
        print("gpu_check: no CUDA device: the GPU parts are skipped; the same steps run on the CPU with the "
              f"'{shape}' shape to check the script itself")
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        make_base(tmp / "base", shape)
        prog = promptc.load(write_program(tmp, tmp / "base"))
        devices = (["cuda", "cpu"] if cuda else ["cpu"])
        for device in devices:
            steps = args.steps or (30 if device == "cuda" else (4 if cuda else 10))
            for target in ("lora", "soft"):
                row = train(prog, target, tmp / f"{target}-{device}", device, steps)
                results["runs"].append(row)
                print(f"train {target:5} on {row['device']:4} {row['dtype']:8}: {row['steps_per_s']:7.2f} steps/s "
                      f"({row['steps']} steps of 8), peak {row['peak_memory_mib']} MiB, estimate "
                      f"{row['estimate_mib']} MiB, {row['trainable']:,} trainable")
            gen = generate(prog, tmp / f"lora-{device}", device, 8 if device == "cpu" else 16)
            results.setdefault("generation", []).append(gen)
            print(f"constrained generation on {gen['device']}: {gen['tokens_per_s']:.1f} tokens/s "
                  f"({gen['tokens']} tokens, {gen['requests']} requests, schema-valid {gen['schema_valid']})")
    if cuda:
        by = {(r["target"], r["device"]): r["steps_per_s"] for r in results["runs"]}
        for target in ("lora", "soft"):
            print(f"{target}: cuda/cpu steps/s = {by[(target, 'cuda')] / by[(target, 'cpu')]:.1f}x")
        g = {x["device"].split(":")[0]: x["tokens_per_s"] for x in results["generation"]}
        print(f"generation: cuda/cpu tokens/s = {g['cuda'] / g['cpu']:.1f}x")
    results["seconds"] = round(time.perf_counter() - t_all, 1)
    print(f"gpu_check: done in {results['seconds']:.0f} s")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"]).mkdir(parents=True, exist_ok=True)
        (Path(os.environ["OUT"]) / "gpu_check.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
