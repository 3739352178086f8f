"""Plain-PyTorch definitions of every operator, one module per family: the semantics the TVM
kernels are tested against, and the ``native_impl=True`` path of the layers.

They import torch only (never TVM), so they serve as references on any machine. They unfold
the input k*k times, like the official PyTorch fallbacks: for checking, not for speed.
"""
from .acda import acda_atom_conv2d_reference
from .ddf import ddf_reference
from .pac import (nd2col, pacconv2d_reference, pacconv_transpose2d_reference, packernel2d_reference,
                  pacpool2d_reference)

__all__ = ["ddf_reference", "acda_atom_conv2d_reference", "packernel2d_reference", "pacconv2d_reference",
           "pacconv_transpose2d_reference", "pacpool2d_reference", "nd2col"]
