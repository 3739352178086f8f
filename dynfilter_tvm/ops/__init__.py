"""Operator compute definitions (TE). Importing this package registers every kernel."""
from . import ddf  # noqa: F401
