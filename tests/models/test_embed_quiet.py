"""`render` of a text target with `select = "similar"` loads MiniLM for the embeddings; its stderr stays
clean (no transformers load bar) and its stdout is the prompt alone, so it can be piped."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import PROGRAMS


def test_render_with_similar_shots_prints_only_the_prompt(tmp_path):
    text = (PROGRAMS / "route.prompt").read_text(encoding="utf-8")
    text = text.replace('select = "balanced"', 'select = "similar"')
    assert 'select = "similar"' in text
    (tmp_path / "route.prompt").write_text(text, encoding="utf-8")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "route.jsonl").write_text((PROGRAMS / "data" / "route.jsonl").read_text(encoding="utf-8"),
                                                  encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "promptc", "render", "route.prompt", "--target", "route_text",
                        "--input", '{"ticket": {"subject": "refund", "body": "please refund my order"}}'],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    messages = json.loads(r.stdout)
    assert messages[0]["role"] == "system" and len(messages) > 2
