"""Minimal stand-in for `safetensors` (NOT the real package).

diffusers v0.27.2 does `import safetensors` / `from safetensors import safe_open`
at module level but only uses them when loading/saving checkpoints, which this
random-weight benchmark never does. Any use raises.
"""


class SafetensorError(Exception):
    pass


def safe_open(*_args, **_kwargs):
    raise SafetensorError("safetensors shim: checkpoint I/O is not available in this benchmark")
