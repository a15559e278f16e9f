"""Tune target: PEFT training runs (prompt tuning, prefix tuning, p-tuning, LoRA, IA3) that produce
versioned artifacts, gated by the program's test suite."""
