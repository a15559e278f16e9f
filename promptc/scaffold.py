"""`promptc init`: a starter project (a program, its examples file, tests, a text and a tune target, a README).

The files are written only when none of them exists yet, so `init` never overwrites a user's work.
The starter program checks clean; tests/core/test_init.py keeps it that way.
"""

from __future__ import annotations

from pathlib import Path

from promptc import jsonl
from promptc.errors import UsageError

PROGRAM = '''\
# A starter promptc program: label the sentiment of a product review and say why.
# `promptc check {name}.prompt` checks it; README.md lists the next commands.
program {name} "0.1.0"

enum Sentiment {{ positive, negative, mixed }}

type Review {{
  text: str [min_len=1, max_len=2000]
}}

type Verdict {{
  sentiment: Sentiment
  reason: str [min_len=1, max_len=200]  # one short sentence, quoted from the review where possible
}}

task classify(review: Review) -> Verdict {{
  system """
  You label customer reviews. Judge only from the review's own words.
  """
  prompt """
  Label the sentiment of this review and give a one-sentence reason.
  Review: {{{{ review.text }}}}
  """
  example "praise" {{
    input {{ review: {{ text: "Arrived early and works perfectly. Would buy again." }} }}
    output {{ sentiment: positive, reason: "It arrived early and works perfectly." }}
  }}
  examples "data/reviews.jsonl"  # more examples, one JSON object per line

  constraint no_links "the reason never contains a link": not (output.reason matches /https?:\\/\\//)
}}

test classify {{
  case "a clear complaint" {{
    input {{ review: {{ text: "Broke after two days and support never answered." }} }}
    expect output.sentiment == negative
  }}
  case "good and bad" {{
    input {{ review: {{ text: "Great screen, but the battery barely lasts a morning." }} }}
    expect output.sentiment in [mixed, negative]
  }}
  property "a short reason for any review" {{
    given review.text = text(min_len=1, max_len=200)
    check len(output.reason) <= 200
    max_examples = 10
  }}
}}

# A prompt for any chat model, with two of the examples as shots.
target text classify_chat for classify {{ format = "chat", shots = 2 }}

# A LoRA adapter trained from the examples. `tiny-causal` is a built-in stand-in that proves the
# pipeline offline; set `base` to a real model (a hub id or a local directory) for real use.
target tune classify_lora for classify {{ method = "lora", base = "tiny-causal", epochs = 20 }}
'''

EXAMPLES = [
    ({"text": "Terrible. The zip broke the first time I used it."},
     {"sentiment": "negative", "reason": "The zip broke on first use."}),
    ({"text": "Exactly as described, fast delivery, lovely colour."},
     {"sentiment": "positive", "reason": "It matched the description and arrived fast."}),
    ({"text": "Comfortable to wear, though the sizing runs small."},
     {"sentiment": "mixed", "reason": "It is comfortable but the sizing runs small."}),
    ({"text": "Stopped charging within a week. Returned it."},
     {"sentiment": "negative", "reason": "It stopped charging within a week."}),
    ({"text": "The best kettle I have owned: quiet and quick."},
     {"sentiment": "positive", "reason": "It is quiet and quick."}),
    ({"text": "Nice design, but the lid leaks when you pour."},
     {"sentiment": "mixed", "reason": "The design is nice but the lid leaks."}),
]

README = '''\
# {name}

A promptc program made by `promptc init`. Next steps:

```sh
promptc check {name}.prompt                                  # every mistake, with file:line:col and a hint
promptc fmt {name}.prompt                                    # the canonical layout (comments are kept)
promptc render {name}.prompt --target classify_chat \\
  --input '{{"review": {{"text": "Works well, but it is loud."}}}}'   # the exact prompt a model sees
promptc test {name}.prompt --target classify_chat --model openai:MODEL@URL   # run the tests on a model
promptc tune {name}.prompt --target classify_lora            # train the adapter, gated by the tests
promptc test {name}.prompt --artifact out/classify_lora      # test the trained artifact
```

Edit `{name}.prompt` in an editor with `promptc lsp` running (see docs/editors.md in promptc) to get these
diagnostics as you type, hover, completion and go to definition.
'''


def files(name: str) -> dict[str, str]:
    """The starter project's files, relative path -> text."""
    lines = "".join(jsonl.line({"input": {"review": i}, "output": o}) for i, o in EXAMPLES)
    return {
        f"{name}.prompt": PROGRAM.format(name=name),
        "data/reviews.jsonl": lines,
        "README.md": README.format(name=name),
    }


def program_name(directory: Path) -> str:
    """A program name from the directory's name (a valid identifier), `reviews` when there is none."""
    import re

    stem = re.sub(r"[^A-Za-z0-9_]", "_", directory.resolve().name).strip("_").lower()
    if not stem or not re.match(r"[a-z_]", stem):
        return "reviews"
    return stem


def init(directory: str | Path = ".", name: str | None = None) -> list[Path]:
    """Write the starter project into `directory`; refuse (UsageError, nothing written) if any file exists."""
    root = Path(directory)
    name = name or program_name(root)
    if not name.isidentifier():
        raise UsageError(f"'{name}' is not a valid program name", hint="use letters, digits and _")
    planned = {root / rel: text for rel, text in files(name).items()}
    existing = [str(p) for p in planned if p.exists()]
    if existing:
        raise UsageError(f"refusing to overwrite {', '.join(existing)}",
                         hint="run `promptc init` in an empty directory, or pass another DIR")
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} exists and is not a directory")
    for path, text in planned.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as f:  # "x": never clobber a file that appeared meanwhile
            f.write(text)
    return list(planned)
