"""Class 2 (issue 11): `examples` paths cannot read the host, hang, or flood stderr.

Data files resolve inside the program's folder (or a --data-root), only regular files are read, a
size limit applies before reading, and a diagnostic quotes a bounded excerpt of a data line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptc.cli import main
from promptc.compiler import compile_file

GOOD = json.dumps({"input": {"x": "a"}, "output": "b"})


def _program(tmp: Path, path: str) -> Path:
    p = tmp / "prog" / "p.prompt"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text('task t(x: str) -> str {\n  prompt "{{ x }}"\n  examples "' + path + '"\n}\n', encoding="utf-8")
    return p


def _codes(p: Path) -> list[tuple[str, str, int]]:
    r = compile_file(p)
    return [(d.code, d.message, d.span.line if d.span else 0) for d in r.diagnostics if d.is_error]


@pytest.mark.parametrize("path", ["/proc/self/environ", "../../../../../../etc/passwd", "/etc/hostname"])
def test_paths_outside_the_program_folder_are_refused(tmp_path: Path, path: str, capsys, monkeypatch):
    monkeypatch.setenv("PROMPTC_CANARY_KEY", "sk-canary-0123456789abcdef")
    p = _program(tmp_path, path)
    (code, message, line), = _codes(p)
    assert code in ("E110", "E108") and line == 3
    if Path(path if path.startswith("/") else p.parent / path).exists():
        assert code == "E110" and "outside the program's folder" in message
    assert main(["check", str(p)]) == 1
    out = capsys.readouterr()
    assert "sk-canary" not in out.out + out.err and "root:" not in out.out + out.err


def test_a_symlink_out_of_the_program_folder_is_refused(tmp_path: Path):
    secret = tmp_path / "secret.jsonl"
    secret.write_text(GOOD + "\n", encoding="utf-8")
    p = _program(tmp_path, "data/link.jsonl")
    (p.parent / "data").mkdir()
    (p.parent / "data" / "link.jsonl").symlink_to(secret)
    (code, message, _), = _codes(p)
    assert code == "E110" and "outside" in message
    # a symlink that stays inside the folder is fine
    (p.parent / "data" / "real.jsonl").write_text(GOOD + "\n", encoding="utf-8")
    (p.parent / "data" / "link.jsonl").unlink()
    (p.parent / "data" / "link.jsonl").symlink_to(p.parent / "data" / "real.jsonl")
    assert _codes(p) == []


def test_data_root_allows_another_folder(tmp_path: Path, capsys):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "ex.jsonl").write_text(GOOD + "\n", encoding="utf-8")
    p = _program(tmp_path, "../shared/ex.jsonl")
    assert main(["check", str(p)]) == 1
    assert "E110" in capsys.readouterr().err
    assert main(["check", "--data-root", str(shared), str(p)]) == 0
    from promptc.datafiles import using

    with using([str(shared)]):
        r = compile_file(p)
    assert r.ok and len(r.program.tasks["t"].examples) == 1


def test_devices_and_fifos_are_refused_without_reading(tmp_path: Path):
    p = _program(tmp_path, "/dev/zero")
    assert _codes(p)[0][0] == "E110"
    fifo = tmp_path / "prog" / "fifo.jsonl"
    os.mkfifo(fifo)
    p = _program(tmp_path, "fifo.jsonl")
    # in a child process with a timeout: a read of a FIFO with no writer would block forever
    code = ("import sys; from promptc.compiler import compile_file; r = compile_file(sys.argv[1]); "
            "print([(d.code, d.message) for d in r.diagnostics])")
    res = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=60)
    assert "E110" in res.stdout and "FIFO" in res.stdout, res.stdout + res.stderr


def test_size_limit_refuses_before_reading_and_can_be_raised(tmp_path: Path, capsys):
    p = _program(tmp_path, "big.jsonl")
    big = p.parent / "big.jsonl"
    with big.open("wb") as f:  # a sparse 200 MB file: refused on its size, never read
        f.truncate(200 * 1024 * 1024)
    assert main(["check", str(p)]) == 1
    err = capsys.readouterr().err
    assert "E110" in err and "over the 64.0 MiB limit" in err and "--max-data-bytes" in err
    small = p.parent / "big.jsonl"
    small.write_text(GOOD + "\n" + GOOD + "\n", encoding="utf-8")
    assert main(["check", "--max-data-bytes", "50", str(p)]) == 1
    assert "over the 50 bytes limit" in capsys.readouterr().err
    assert main(["check", "--max-data-bytes", "1K", str(p)]) == 0


def test_a_huge_line_gives_a_bounded_diagnostic(tmp_path: Path, capsys):
    p = _program(tmp_path, "ex.jsonl")
    line = '{"input": {"x": "' + "a" * 10_000_000 + '"}, "output": 5}'
    (p.parent / "ex.jsonl").write_text(GOOD + "\n" + line + "\n", encoding="utf-8")
    assert main(["check", str(p)]) == 1
    out = capsys.readouterr()
    assert "ex.jsonl:2:" in out.err and "E302" in out.err
    assert len(out.out) + len(out.err) < 5_000
    assert main(["check", "--format", "json", str(p)]) == 1
    out = capsys.readouterr()
    assert len(out.out) + len(out.err) < 5_000


def test_extra_examples_use_the_same_reader(tmp_path: Path):
    """--extra-examples: anywhere the user can read, but only a regular file within the size limit."""
    from promptc.compiler import compile_text
    from promptc.datafiles import using
    from promptc.errors import InputError
    from promptc.targets.tune.data import load_extra

    prog = compile_text('task t(x: str) -> str { prompt "{{ x }}" }').program
    task = prog.tasks["t"]
    good = tmp_path / "elsewhere.jsonl"
    good.write_text(GOOD + "\n", encoding="utf-8")
    assert [e.input for e in load_extra(str(good), task)] == [{"x": "a"}]
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="FIFO"):
        load_extra(str(fifo), task)
    with using((), 10), pytest.raises(InputError, match="limit"):
        load_extra(str(good), task)
