"""Shim: only the regex diffusers.utils.hub_utils imports."""
import re

REGEX_COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")
