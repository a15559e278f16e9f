"""Targets: what a task compiles to. `text/` renders prompts and writes text artifacts; `tune/` trains
PEFT adapters and writes tuned artifacts. Each target writes and reads its own artifact format."""
