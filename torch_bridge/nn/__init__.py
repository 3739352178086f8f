"""Drop-in layers built on the compiled ops."""
from .ddf import DDFPack, DDFUpPack, FilterNorm, build_channel_branch, build_spatial_branch  # noqa: F401
