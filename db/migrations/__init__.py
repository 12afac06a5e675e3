"""Numbered schema migrations: each module has NAME and either `UP` / `DOWN` lists of
statements (run in order) or `up(cur)` / `down(cur)` functions for steps that need code."""
