"""Serving: promptc as an OpenAI-compatible HTTP server."""
