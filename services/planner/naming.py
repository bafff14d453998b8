"""Target names from templates: always a valid DNS-1123 label, unique within the plan.

Source names are anything (``Web Server #1``, ``db_prod``, 200 characters, Cyrillic); a
KubeVirt VM and a PVC need a DNS-1123 label (lower-case alphanumerics and ``-``, at most 63
characters, alphanumeric at both ends). A template fills placeholders, then the result is
folded into a label. When folding lost information (truncated, emptied) or two VMs fold to
the same name, a short hash of the source id is appended, so the name is deterministic (a
re-run gives the same name, finding what the previous run created) and distinct.

Templates are checked when a plan is written: an unknown placeholder, a format spec or an
attribute access (``{name.__class__}``) is refused with the placeholder named.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from string import Formatter

LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MAX = 63

VM_FIELDS = {
    "name": "the source VM's name",
    "id": "the source VM's id",
    "plan": "the plan's name",
}
PVC_FIELDS = {
    "vm": "the target VM's name (after its own template)",
    "vmName": "the source VM's name",
    "vmId": "the source VM's id",
    "disk": "the source disk's name",
    "diskId": "the source disk's id",
    "index": "the disk's position in the VM (0 is the first)",
    "plan": "the plan's name",
}
DEFAULT_VM = "{name}"
DEFAULT_PVC = "{vm}-disk-{index}"


class TemplateError(ValueError):
    pass


def check_template(template: str, fields: dict[str, str]) -> str:
    """The template, if it only uses known plain placeholders; ``TemplateError`` otherwise."""
    try:
        parsed = list(Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"not a template: {exc}") from None
    used = False
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in fields:
            known = ", ".join("{" + f + "}" for f in fields)
            raise TemplateError(f"unknown placeholder {{{name}}}; known: {known}")
        if spec or conversion:
            raise TemplateError(f"{{{name}}} takes no format spec or conversion")
        used = True
    if not used:
        raise TemplateError("a template needs at least one placeholder, or every name is equal")
    return template


def render(template: str, values: dict[str, object]) -> str:
    return template.format(**{k: str(v) for k, v in values.items()})


def fold(text: str) -> str:
    """Fold any text into label characters (may be empty or too long)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    dashed = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower())
    return dashed.strip("-")


def short_hash(seed: str, length: int = 5) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


def label(text: str, seed: str) -> str:
    """A valid label from ``text``; ``seed`` (a source id) makes a lossy fold distinct."""
    folded = fold(text)
    if folded and folded == text and len(folded) <= MAX:
        return folded
    return with_suffix(folded or "x", seed)


def with_suffix(base: str, seed: str) -> str:
    suffix = short_hash(seed)
    stem = base[: MAX - len(suffix) - 1].rstrip("-") or "x"
    return f"{stem}-{suffix}"


class Names:
    """Hands out unique labels within one plan, in a deterministic order."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def take(self, text: str, seed: str) -> str:
        name = label(text, seed)
        if name in self._taken:
            name = with_suffix(fold(text) or "x", seed)
            attempt = 1
            while name in self._taken:  # two seeds sharing 5 hex digits: rare, still handled
                name = with_suffix(fold(text) or "x", f"{seed}#{attempt}")
                attempt += 1
        self._taken.add(name)
        return name
