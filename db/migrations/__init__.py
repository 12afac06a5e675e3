"""Numbered schema migrations: each module has NAME, `up(conn)` and `down(conn)`."""
