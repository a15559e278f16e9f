"""Fixtures shared by the torch-free tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def fake():
    """A fake OpenAI server on 127.0.0.1 (tests/core/test_http_backend.py's `Fake`) answering `fake.reply`;
    `fake.faults` queues failures, `fake.seen` records each request."""
    from tests.core.test_http_backend import Fake, start

    handler = type("F", (Fake,), {"faults": [], "seen": [], "reply": "bug", "finish_reason": "stop"})
    srv = start(handler)
    handler.url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    yield handler
    srv.shutdown()
    srv.server_close()
