"""Operator compute definitions (TE). Importing this package registers every kernel."""
from . import acda, ddf  # noqa: F401
