"""Leaf helpers that know nothing of kos: clocks, logging set-up."""
