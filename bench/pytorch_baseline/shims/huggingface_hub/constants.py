"""Shim: constants diffusers reads at import time (values mirror huggingface_hub defaults)."""
import os

HF_HOME = os.path.expanduser(os.getenv("HF_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "huggingface")))
HF_HUB_CACHE = os.path.join(HF_HOME, "hub")
HF_HUB_OFFLINE = True
HF_HUB_DISABLE_TELEMETRY = True
