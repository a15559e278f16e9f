"""`promptc init`: a starter project (a program, its examples file, tests, a text and a tune target, a README).

The files are written only when none of them exists yet, so `init` never overwrites a user's work.
The starter program checks clean; tests/core/test_init.py keeps it that way.
"""

from __future__ import annotations

from pathlib import Path

from promptc import jsonl
from promptc.errors import UsageError

PROGRAM = '''\
# A starter promptc program: label a product review's sentiment, what it is about, and whether
# support should follow up. `promptc check {name}.prompt` checks it; README.md lists the next commands.
program {name} "0.1.0"

enum Sentiment {{ positive, negative, mixed }}

enum Aspect {{ quality, delivery, price, service }}

type Review {{
  text: str [min_len=1, max_len=2000]
}}

type Verdict {{
  sentiment: Sentiment
  aspect: Aspect
  follow_up: bool  # should support contact the customer?
}}

task classify(review: Review) -> Verdict {{
  system """
  You label customer reviews. Judge only from the review's own words.
  """
  prompt """
  Label the sentiment of this review, the aspect it is mostly about, and whether support should follow up.
  Review: {{{{ review.text }}}}
  """
  example "praise" {{
    input {{ review: {{ text: "Arrived early and works perfectly. Would buy again." }} }}
    output {{ sentiment: positive, aspect: quality, follow_up: false }}
  }}
  examples "data/reviews.jsonl"  # more examples, one JSON object per line

  constraint unhappy "support follows up on every negative review": output.follow_up when output.sentiment == negative
}}

test classify {{
  case "a clear complaint" {{
    input {{ review: {{ text: "Broke after two days and support never answered." }} }}
    expect output.sentiment == negative
    expect output.follow_up
  }}
  case "good and bad" {{
    input {{ review: {{ text: "Great screen, but the battery barely lasts a morning." }} }}
    expect output.sentiment in [mixed, negative]
  }}
  property "every negative review gets a follow-up" {{
    given review.text = text(min_len=1, max_len=200)
    check output.follow_up when output.sentiment == negative
    max_examples = 10
  }}
}}

# A prompt for any chat model, with two of the examples as shots.
target text classify_chat for classify {{ format = "chat", shots = 2 }}

# Trained from the examples on MiniLM-L6, the real pretrained encoder that ships with promptc[tune]:
# one shared body with a head per field (docs/tuning.md). For a generated output (free text), set `base`
# to a causal LM (a hub id or a local directory).
target tune classify_heads for classify {{ base = "minilm" }}
'''

EXAMPLES = [
    ({"text": "Terrible. The zip broke the first time I used it."},
     {"sentiment": "negative", "aspect": "quality", "follow_up": True}),
    ({"text": "Exactly as described, fast delivery, lovely colour."},
     {"sentiment": "positive", "aspect": "delivery", "follow_up": False}),
    ({"text": "Comfortable to wear, though the sizing runs small."},
     {"sentiment": "mixed", "aspect": "quality", "follow_up": False}),
    ({"text": "Stopped charging within a week. Returned it."},
     {"sentiment": "negative", "aspect": "quality", "follow_up": True}),
    ({"text": "The best kettle I have owned: quiet and quick."},
     {"sentiment": "positive", "aspect": "quality", "follow_up": False}),
    ({"text": "Nice design, but the lid leaks when you pour."},
     {"sentiment": "mixed", "aspect": "quality", "follow_up": False}),
    ({"text": "The parcel came a week late and the box was crushed."},
     {"sentiment": "negative", "aspect": "delivery", "follow_up": True}),
    ({"text": "Good value for the money, cheaper than in the shops."},
     {"sentiment": "positive", "aspect": "price", "follow_up": False}),
    ({"text": "Far too expensive for what you get."},
     {"sentiment": "negative", "aspect": "price", "follow_up": True}),
    ({"text": "The help desk sorted out my problem in five minutes, very friendly."},
     {"sentiment": "positive", "aspect": "service", "follow_up": False}),
    ({"text": "Nobody answered my emails for two weeks."},
     {"sentiment": "negative", "aspect": "service", "follow_up": True}),
    ({"text": "Decent price, but delivery took longer than promised."},
     {"sentiment": "mixed", "aspect": "delivery", "follow_up": False}),
    ({"text": "Friendly staff, although they could not fix the fault."},
     {"sentiment": "mixed", "aspect": "service", "follow_up": False}),
    ({"text": "It works, but it costs twice what the old model did."},
     {"sentiment": "mixed", "aspect": "price", "follow_up": False}),
    ({"text": "Delivered the next morning, well packed."},
     {"sentiment": "positive", "aspect": "delivery", "follow_up": False}),
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
promptc tune {name}.prompt --target classify_heads           # train on MiniLM, gated by the tests
promptc test {name}.prompt --artifact out/classify_heads     # test the trained artifact
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
