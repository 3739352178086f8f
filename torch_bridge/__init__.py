"""PyTorch bridge: custom ops (``functional``), layers (``nn``) and the plain-PyTorch references."""
from . import functional, reference  # noqa: F401
from . import nn  # noqa: F401
