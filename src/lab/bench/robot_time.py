"""`lab bench robot-time`: lab.analysis.robot_time on a recorded campaign (issue 37, item 1)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from lab.analysis.robot_time import main as account

    return account(argv)
