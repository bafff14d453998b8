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


def canonical(value: str | int | float) -> str:
    """A quantity as the API server writes it back (``resource.Quantity``'s canonical form):
    binary suffixes stay binary ("131072Ki" -> "128Mi", "0.5Gi" -> "512Mi"), decimal ones
    and plain numbers take the largest exact SI suffix ("1000M" -> "1G", "0.5" -> "500m",
    "134217728" stays), exponents stay exponents ("1000e0" -> "1e3")."""
    amount = quantity(value)
    text = str(value).strip()
    match = _QUANTITY.match(text) if not isinstance(value, int | float) else None
    exponent, suffix = (match.group(2), match.group(3)) if match else (None, None)
    if suffix and suffix.endswith("i") and amount == amount.to_integral_value():
        whole = int(amount)
        if abs(whole) >= 1024:
            for name in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
                unit = int(_SUFFIXES[name])
                if whole % unit == 0:
                    return f"{whole // unit}{name}"
    if amount == 0:
        return "0"
    # Decimal: the largest power of 1000 (down to nano, rounding up below it) that
    # leaves a whole mantissa.
    nano = math.ceil(amount * Decimal(10) ** 9)
    power = -9
    while nano % 1000 == 0 and power < 18:
        nano //= 1000
        power += 3
    if exponent:
        return f"{nano}e{power}" if power else str(nano)
    names = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
    return f"{nano}{names[power]}"
