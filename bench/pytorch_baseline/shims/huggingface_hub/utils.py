"""Shim: names diffusers imports from huggingface_hub.utils at import time."""
import importlib.util


class EntryNotFoundError(Exception):
    pass


class RepositoryNotFoundError(Exception):
    pass


class RevisionNotFoundError(Exception):
    pass


def is_jinja_available():
    return importlib.util.find_spec("jinja2") is not None


def validate_hf_hub_args(fn):
    """Real one validates repo_id/token kwargs; a pass-through decorator is enough here."""
    return fn
