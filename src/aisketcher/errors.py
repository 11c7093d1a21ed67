"""The project's error types: every bad input surfaces as one of these, naming its source."""

from __future__ import annotations


class SketchDataError(ValueError):
    """A sketch, file or request that cannot be used; the message names the source and the problem."""

    def __init__(self, problem: str, source: str | None = None, line: int | None = None) -> None:
        self.problem = problem
        self.source = source
        self.line = line
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(where + problem)
