"""Evaluation: metrics and reports (pure functions over arrays)."""
