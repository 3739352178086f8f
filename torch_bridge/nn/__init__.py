"""Drop-in layers built on the compiled ops."""
from .acda import ACDAConv2d  # noqa: F401
from .ddf import DDFPack, DDFUpPack, FilterNorm, build_channel_branch, build_spatial_branch  # noqa: F401
