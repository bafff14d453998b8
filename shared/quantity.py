"""Kubernetes resource quantities ("10Gi", "500m", "1.5G", "1e3") as numbers.

Spelled once because both sides of Hoist read them: the inventory turns a target's PVC
requests and CSIStorageCapacity objects into bytes, and the cluster simulator compares
requests against capacity limits the way a real provisioner does. The grammar is the API
server's (``resource.Quantity``): a decimal number with a binary (``Ki``..``Ei``) or decimal
(``n``..``E``) suffix, or an exponent.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$"
)


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity ("10Gi", "500m", "1.5G", "1e3", 1024) as a number;
    ``ValueError`` for anything the API server would refuse."""
    if isinstance(value, bool):
        raise ValueError(f"quantities must match the regular expression: {value!r}")
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise ValueError(f"quantities must match the regular expression: {value!r}")
    number, exponent, suffix = match.groups()
    try:
        result = Decimal(number)
    except InvalidOperation as exc:  # pragma: no cover - the regex only lets numbers through
        raise ValueError(f"invalid quantity {value!r}") from exc
    if exponent:
        return result * Decimal(10) ** int(exponent[1:])
    return result * _SUFFIXES[suffix or ""]


def size_bytes(value: str | int | float) -> int:
    """Bytes of a storage quantity, rounded up as the API server rounds a request."""
    return math.ceil(quantity(value))


def binary_si(size: int) -> str:
    """Bytes as the API server writes a binary quantity back: the largest of Ki..Ei that
    divides it exactly ("3Gi"), else the plain number ("1500")."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = int(_SUFFIXES[suffix])
        if size and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)
