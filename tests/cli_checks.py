"""What every command-line test asks of a user's mistake: one line, a non-zero exit, no traceback."""

from __future__ import annotations


def one_error_line(rc: int, err: str, *needles: str) -> str:
    """Assert that a command failed (rc != 0) with exactly one non-empty line on stderr, no
    traceback, and each of `needles` in that line; return the line."""
    assert rc != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
