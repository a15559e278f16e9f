"""The generation cache: SQLite in WAL mode, safe for several processes at once.

The key covers the rendered request, the model identity, the decoding parameters (including the
constraint grammar) and a sample index, so repeated samples stay distinct. API keys never enter it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from promptc.errors import CacheError

DEFAULT_DIR = ".promptc"


def default_path() -> Path:
    return Path(os.environ.get("PROMPTC_CACHE_DIR", DEFAULT_DIR)) / "cache.db"


def cache_key(identity: str, request: Any, decoding: dict[str, Any], sample: int) -> str:
    payload = json.dumps({"model": identity, "request": request, "decoding": decoding, "sample": sample},
                         sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class Cache:
    """get_many / put_many over one table; each process opens its own connection."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_path()
        self._lock = threading.Lock()
        try:
            self._open()
        except sqlite3.DatabaseError as e:
            raise CacheError(f"the generation cache {self.path} cannot be read ({e})",
                             hint="`promptc cache clear` moves the damaged file aside and starts a new cache; "
                                  "or run with --no-cache") from None

    @classmethod
    def reset(cls, path: str | Path | None = None) -> tuple[Cache, int, Path | None]:
        """Open the cache and empty it: (cache, rows removed, where a damaged file was moved aside)."""
        target = Path(path) if path is not None else default_path()
        try:
            cache = cls(target)
            return cache, cache.clear(), None
        except (CacheError, sqlite3.DatabaseError):
            aside = target.with_name(f"{target.name}.damaged-{int(time.time())}")
            target.replace(aside)
            for suffix in ("-wal", "-shm"):
                side = target.with_name(target.name + suffix)
                if side.exists():
                    side.replace(aside.with_name(aside.name + suffix))
            return cls(target), 0, aside

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=60, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 60000")
        self._retry(lambda: self._db.execute("PRAGMA journal_mode = WAL"))
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._retry(lambda: self._db.execute(
            "CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
            "prompt_tokens INTEGER, completion_tokens INTEGER, seconds REAL, created REAL, finish_reason TEXT, "
            "repaired INTEGER NOT NULL DEFAULT 0)"))
        self._retry(self._migrate)

    def _migrate(self) -> None:
        """Cache files from earlier versions gain the newer columns: rows written before finish reasons
        were recorded read back with finish_reason None (unknown), and before the repaired flag with
        repaired False (those versions did not repair)."""
        cols = {row[1] for row in self._db.execute("PRAGMA table_info(generations)")}
        for name, decl in (("finish_reason", "TEXT"), ("repaired", "INTEGER NOT NULL DEFAULT 0")):
            if name in cols:
                continue
            try:
                self._db.execute(f"ALTER TABLE generations ADD COLUMN {name} {decl}")
            except sqlite3.OperationalError as e:  # another process added it first
                if "duplicate column" not in str(e):
                    raise

    @staticmethod
    def _retry(fn, attempts: int = 20):
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as e:  # "database is locked" while another process sets up
                if "locked" not in str(e) or i == attempts - 1:
                    raise
                time.sleep(0.05 * (i + 1))

    def get_many(self, keys: list[str]) -> dict[str, tuple[str, int, int, float, str | None, bool]]:
        """key -> (text, prompt_tokens, completion_tokens, seconds, finish_reason, repaired) for the keys
        held."""
        out: dict[str, tuple[str, int, int, float, str | None, bool]] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                q = ("SELECT key, text, prompt_tokens, completion_tokens, seconds, finish_reason, repaired "
                     "FROM generations WHERE key IN (%s)")
                rows = self._retry(lambda chunk=chunk, q=q: self._db.execute(
                    q % ",".join("?" * len(chunk)), chunk).fetchall())
                for k, text, pt, ct, sec, finish, repaired in rows:
                    out[k] = (text, pt or 0, ct or 0, sec or 0.0, finish, bool(repaired))
        return out

    def put_many(self, items: list[tuple]) -> None:
        """Store (key, text, prompt_tokens, completion_tokens, seconds[, finish_reason[, repaired]]) rows."""
        if not items:
            return
        now = time.time()
        with self._lock:
            def write():
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO generations (key, text, prompt_tokens, completion_tokens, "
                        "seconds, created, finish_reason, repaired) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [(k, t, pt, ct, s, now, rest[0] if rest else None, int(bool(rest[1:2] and rest[1])))
                         for k, t, pt, ct, s, *rest in items])
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            self._retry(write)

    def clear(self) -> int:
        with self._lock:
            n = self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
            self._retry(lambda: self._db.execute("DELETE FROM generations"))
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return n

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
