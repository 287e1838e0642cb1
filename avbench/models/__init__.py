"""Models: the coupled MM-UNet and the 64→256 super-resolution U-Net, with shared layers."""

from .mmunet import MMUNet, MMUNetConfig
from .state_dict import clean_state_dict, safe_load

__all__ = ["MMUNet", "MMUNetConfig", "clean_state_dict", "safe_load"]

try:  # the super-resolution model lives in its own module (another area); export it when present
    from .superres import SuperResConfig, SuperResUNet  # noqa: F401

    __all__ += ["SuperResConfig", "SuperResUNet"]
except ImportError:
    pass
