"""kdlib: knowledge distillation of remote-sensing multimodal LLMs (GeoChat-13B -> GeoChat-7B)."""

from kdlib.profiles import PROFILE_NAMES, Profile, get_profile

__all__ = ["PROFILE_NAMES", "Profile", "get_profile"]
__version__ = "0.1.0"
