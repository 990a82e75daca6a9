"""The one base class of every error the course's package raises (see docs/DESIGN.md)."""


class EffcourseError(Exception):
    """Base of every effcourse error; each also keeps its built-in base (ValueError, RuntimeError, ...)."""
