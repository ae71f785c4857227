"""ampx: run coding-agent tasks in the background until CI is green."""

__version__ = "0.1.0"
