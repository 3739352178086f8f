"""Operator compute definitions (TE). Importing this package registers every kernel."""
from . import acda, ddf, pac  # noqa: F401
