"""Workflows that combine targets, execution and the test suite: tune (train + gate), distill, optimize."""
