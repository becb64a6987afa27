"""Minimal offline stand-in for `huggingface_hub` (NOT the real package).

Provides only the names diffusers v0.27.2 imports at import time on the path
`diffusers.models.unets.unet_2d_condition`. Nothing here talks to the network;
every hub function raises if it is ever called (the benchmark never calls them).
"""
__version__ = "0.0.0+lumen-shim"


def _unavailable(*_args, **_kwargs):
    raise RuntimeError("huggingface_hub shim: hub access is not available in this benchmark")


create_repo = hf_hub_download = upload_folder = model_info = cached_download = _unavailable


class ModelCardData:  # only referenced by diffusers.utils.hub_utils
    def __init__(self, *args, **kwargs):
        _unavailable()


class ModelCard(ModelCardData):
    pass
