"""Issue 11, classes 4 and 5: `-o` never destroys a user's files, and a manifest cannot switch off
tamper detection (it is validated against its schema before any field is read)."""

from __future__ import annotations

import json

import pytest

import promptc
from promptc.artifacts import check_destination, claim_partial, read_manifest, validate_manifest
from promptc.cli import main
from promptc.errors import ArtifactError
from promptc.execution import load_artifact
from tests.conftest import PROGRAMS


def _compile(dest) -> int:
    return main(["compile", str(PROGRAMS / "route.prompt"), "--target", "route_text", "-o", str(dest)])


def test_a_web_apps_manifest_does_not_make_a_folder_replaceable(tmp_path, capsys):
    public = tmp_path / "public"
    public.mkdir()
    (public / "manifest.json").write_text('{"name": "my web app", "start_url": "/"}')
    (public / "index.html").write_text("<h1>hello</h1>")
    assert _compile(public) == 1
    assert "not a promptc artifact" in capsys.readouterr().err
    assert (public / "index.html").read_text() == "<h1>hello</h1>"


def test_a_file_added_to_an_artifact_is_never_deleted(tmp_path, capsys):
    art = tmp_path / "art"
    assert _compile(art) == 0
    assert _compile(art) == 0  # an untouched artifact is replaced
    (art / "notes.md").write_text("my notes")
    assert _compile(art) == 1
    err = capsys.readouterr().err
    assert "notes.md" in err and "refusing" in err
    assert (art / "notes.md").read_text() == "my notes"


def test_non_directories_and_links_are_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ArtifactError, match="not a directory"):
        check_destination(f)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(ArtifactError):
        check_destination(tmp_path / "link")
    check_destination(tmp_path / "missing")  # fine
    check_destination(tmp_path / "real")  # empty: fine


def test_an_unrelated_partial_folder_is_refused_not_deleted(tmp_path):
    partial = tmp_path / "X.partial"
    partial.mkdir()
    (partial / "thesis.tex").write_text("years of work")
    with pytest.raises(ArtifactError, match="not made by promptc"):
        claim_partial(partial, "t", resume=False)
    assert (partial / "thesis.tex").read_text() == "years of work"
    ours = claim_partial(tmp_path / "Y.partial", "t", resume=False)
    (ours / "checkpoint").mkdir()
    assert claim_partial(ours, "t", resume=True) == ours and (ours / "checkpoint").is_dir()
    claim_partial(ours, "t", resume=False)
    assert not (ours / "checkpoint").exists()


def test_deleting_the_hash_list_does_not_switch_off_tamper_detection(tmp_path):
    art = tmp_path / "art"
    assert _compile(art) == 0
    prog = promptc.load(PROGRAMS / "route.prompt")
    task = prog.ir.tasks["route"]
    load_artifact(art, prog.ir, task)  # loads as built
    m = json.loads((art / "manifest.json").read_text())
    del m["files"]
    (art / "manifest.json").write_text(json.dumps(m))
    (art / "messages.json").write_text("[]")
    with pytest.raises(ArtifactError, match="files"):
        load_artifact(art, prog.ir, task)


@pytest.mark.parametrize("breakage", ["no base", "base not an object", "no kind", "files empty", "not an object"])
def test_manifest_schema_errors_are_clear_refusals(breakage, tmp_path):
    m = {"promptc": "0.1.0", "kind": "tune", "program": {"name": "p", "version": "1", "hash": "h"},
         "task": {"name": "t", "hash": "h"}, "files": {"adapter/x": "0" * 64}, "family": "causal",
         "method": "lora", "options": {}, "adapter_hash": "a",
         "base": {"id": "tiny-causal", "weights_hash": "w", "config_hash": "c"}}
    validate_manifest(m)  # the intact manifest is valid
    if breakage == "no base":
        del m["base"]
    elif breakage == "base not an object":
        m["base"] = "tiny-causal"
    elif breakage == "no kind":
        del m["kind"]
    elif breakage == "files empty":
        m["files"] = {}
    else:
        m = ["not", "a", "manifest"]
    d = tmp_path / "a"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="invalid manifest"):
        read_manifest(d)
