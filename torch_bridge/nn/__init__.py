"""Drop-in layers built on the compiled ops, conv hot-swap, and the reference switch."""
from .acda import ACDAConv2d  # noqa: F401
from .ddf import DDFPack, DDFUpPack, FilterNorm, build_channel_branch, build_spatial_branch  # noqa: F401
from .native import use_reference_ops  # noqa: F401
from .pac import PacConv2d, PacConvTranspose2d, PacPool2d  # noqa: F401
from .paccrf import PacCRF, PacCRFLoose, create_position_feats, create_YXRGB  # noqa: F401
from .pac_swap import GuidedPacConv2d, set_pac_guidance  # noqa: F401
