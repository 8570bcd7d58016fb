"""Compute accounting: stage timers, peak memory, FLOP counting."""
