"""The targets a benchmark checks. Each is printed as met or NOT met beside its figure; the script's
exit status then says whether all were met (0) or not (1), so that a script or CI can act on it."""

from __future__ import annotations

import sys


class Targets:
    def __init__(self) -> None:
        self.missed: list[str] = []

    def check(self, name: str, met: bool) -> str:
        """Record one target; return the word to print beside its figure."""
        if not met:
            self.missed.append(name)
        return "met" if met else "NOT met"

    def exit_status(self) -> int:
        """0 when every target checked was met; else 1, after naming the missed ones on stderr."""
        if self.missed:
            print(f"targets NOT met: {'; '.join(self.missed)}", file=sys.stderr)
            return 1
        return 0
