"""Custom ops per family (``torch.library``): argument checks, the compiled kernels through
``torch_bridge.runtime``, autograd formulas and fake (meta) implementations. The public face
is ``torch_bridge.functional``."""
