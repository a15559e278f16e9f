#!/usr/bin/env bash
# A new user's install: build the wheel, install it (not editable) with the [tune] extra into a fresh
# virtual environment, and from a folder outside the checkout write a fresh program with default
# options, then check, compile, render, tune (briefly, on tiny-causal) and run the tuned artifact.
# CI runs this; it catches a wheel that lacks a package (it once lacked promptc.tune).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-python3.11}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q --upgrade pip
"$WORK/venv/bin/pip" wheel -q --no-deps -w "$WORK/dist" "$ROOT"
"$WORK/venv/bin/pip" install -q torch==2.13.0
"$WORK/venv/bin/pip" install -q "$(ls "$WORK"/dist/promptc-*.whl)[tune]"
PROMPTC="$WORK/venv/bin/promptc"

mkdir -p "$WORK/user/data"
cd "$WORK/user"
cat > sentiment.prompt <<'PROMPT'
program sentiment "0.1.0"

enum Mood { positive, negative }

task mood(review: str [min_len=1, max_len=400]) -> Mood {
  prompt """
  Is this review positive or negative?
  Review: {{ review }}
  """
  examples "data/mood.jsonl"
}

test mood {
  property "always a mood" {
    check output in [positive, negative]
  }
}

target text mood_text for mood { shots = 2 }
target tune mood_tune for mood { base = "tiny-causal", max_steps = 4 }
PROMPT
for i in 1 2 3 4 5 6; do
  echo "{\"input\": {\"review\": \"great product number $i, works well\"}, \"output\": \"positive\"}"
  echo "{\"input\": {\"review\": \"broke after $i days, awful\"}, \"output\": \"negative\"}"
done > data/mood.jsonl

"$PROMPTC" --version
"$PROMPTC" check sentiment.prompt
"$PROMPTC" compile sentiment.prompt --target mood_text -o out/mood_text
test -f out/mood_text/manifest.json
"$PROMPTC" render sentiment.prompt --target mood_text --input '{"review": "lovely"}' | grep -q "lovely"
"$PROMPTC" tune sentiment.prompt --target mood_tune -o out/mood_tune --no-gate
test -f out/mood_tune/manifest.json
echo '{"review": "pretty good"}' > in.jsonl
"$PROMPTC" run sentiment.prompt --artifact out/mood_tune --inputs in.jsonl --details
echo "wheel smoke: ok"
