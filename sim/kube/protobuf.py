"""Decoding the Kubernetes protobuf envelope into the JSON form the store keeps.

A body of type `application/vnd.kubernetes.protobuf` is the magic `k8s\\x00` followed by a
`runtime.Unknown` (typeMeta, raw, contentEncoding, contentType), whose `raw` is the object's
generated message. The wire decoding is plain protobuf; what makes it Kubernetes is the
field tables (`sim.kube.prototables`) and the Go marshaller's habits the JSON form hides:
non-pointer fields are always written, so a zero scalar is the Go zero value the JSON form
omits (dropped here) unless the field is a pointer; a zero `Time` is an empty message (null).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sim.kube.errors import ApiError, bad_request
from sim.kube.kinds import Kind
from sim.kube.prototables import IGNORED, KINDS, MESSAGES, SCALARS, Field

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
GO_ZERO_TIME = -62135596800  # 0001-01-01T00:00:00Z as Unix seconds

Wire = tuple[int, int, int | bytes]  # field number, wire type, value


class WireError(ValueError):
    pass


def is_protobuf(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == MEDIA_TYPE


def decode_object(body: bytes, kind: Kind) -> dict[str, Any]:
    """The object a protobuf request body carries, as the JSON form a client would send."""
    if kind.custom:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: "
            f"application/json, application/yaml ({MEDIA_TYPE} is not served for custom resources)",
        )
    if not body.startswith(MAGIC):
        raise bad_request(
            "the body of the request could not be decoded: provided data does not appear to "
            "be a protobuf message, expected prefix [107 56 115 0]"
        )
    try:
        envelope = dict(_by_number(body[len(MAGIC) :]))
        type_meta = dict(_by_number(_bytes(envelope.get(1, b""))))
        api_version = _bytes(type_meta.get(1, b"")).decode()
        kind_name = _bytes(type_meta.get(2, b"")).decode()
        encoding = _bytes(envelope.get(3, b"")).decode()
        raw = _bytes(envelope.get(2, b""))
    except (WireError, UnicodeDecodeError) as exc:
        raise bad_request(f"the body of the request could not be decoded: {exc}") from exc
    if encoding:
        raise bad_request(f"the body of the request could not be decoded: encoding {encoding}")
    message = KINDS.get((api_version, kind_name))
    if message is None:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the simulator does not decode {api_version or '?'}/{kind_name or '?'} from "
            f"{MEDIA_TYPE}; send application/json",
        )
    try:
        obj = _message(raw, message)
    except (WireError, UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"the body of the request could not be decoded: {exc}") from exc
    return {"apiVersion": api_version, "kind": kind_name, **obj}


# -- wire format ---------------------------------------------------------------------------


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise WireError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _fields(data: bytes) -> list[Wire]:
    out: list[Wire] = []
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, at = _varint(data, at)
        elif wire == 2:
            size, at = _varint(data, at)
            if at + size > len(data):
                raise WireError(f"field {number} runs past the end of its message")
            value, at = data[at : at + size], at + size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if at + width > len(data):
                raise WireError("truncated fixed-width field")
            value, at = int.from_bytes(data[at : at + width], "little"), at + width
        else:
            raise WireError(f"wire type {wire} of field {number} is not used by Kubernetes")
        if number == 0:
            raise WireError("field number 0")
        out.append((number, wire, value))
    return out


def _by_number(data: bytes) -> list[tuple[int, int | bytes]]:
    return [(number, value) for number, _, value in _fields(data)]


def _bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise WireError("a length-delimited field came as a number")
    return value


def _int(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise WireError("a number field came length-delimited")
    return value - (1 << 64) if value >= 1 << 63 else value


def _empty(data: bytes) -> bool:
    """Whether a message carries only zero values (Go's always-written empty structs)."""
    try:
        fields = _fields(data)
    except WireError:
        return False
    return all(
        (_empty(value) if isinstance(value, bytes) else value == 0) for _, _, value in fields
    )


# -- messages ------------------------------------------------------------------------------


def _message(data: bytes, name: str) -> dict[str, Any]:
    table = MESSAGES[name]
    out: dict[str, Any] = {}
    for number, wire, value in _fields(data):
        field = table.get(number)
        if field is None:
            if (isinstance(value, bytes) and _empty(value)) or value == 0:
                continue
            raise WireError(f"field {number} of {name} is not decoded by the simulator (send JSON)")
        if field.type == IGNORED:
            continue
        if field.map:
            key, item = _map_entry(_bytes(value), field)
            out.setdefault(field.json, {})[key] = item
            continue
        if field.repeated and wire == 2 and field.type in ("int32", "int64", "bool"):
            items = [_scalar(v, field.type) for v in _packed(_bytes(value))]
            out.setdefault(field.json, []).extend(items)
            continue
        decoded = _value(value, field)
        if field.json == "^":
            out.update(decoded)
        elif field.repeated:
            out.setdefault(field.json, []).append(decoded)
        elif decoded is not None and (field.pointer or not _zero(decoded, field.type)):
            out[field.json] = decoded
        elif field.json in out:
            del out[field.json]  # a later zero occurrence of a scalar wins, as in protobuf
    return out


def _packed(data: bytes) -> list[int]:
    values, at = [], 0
    while at < len(data):
        value, at = _varint(data, at)
        values.append(value)
    return values


def _map_entry(data: bytes, field: Field) -> tuple[str, Any]:
    entry = dict(_by_number(data))
    key = _bytes(entry.get(1, b"")).decode()
    raw = entry.get(2, b"" if field.type != "bool" else 0)
    value = _value(raw, Field("", field.type))
    if value is None:
        value = _value(b"", Field("", field.type)) if field.type in SCALARS else ""
    return key, value


def _zero(value: Any, kind: str) -> bool:
    return kind in SCALARS and value in ("", 0, False) and not isinstance(value, dict)


def _scalar(value: int | bytes, kind: str) -> Any:
    if kind == "string":
        return _bytes(value).decode()
    if kind == "bytes":
        return base64.b64encode(_bytes(value)).decode()
    if kind == "bool":
        return bool(_int(value))
    number = _int(value)
    if kind == "int32":
        number = (number + (1 << 31)) % (1 << 32) - (1 << 31)
    return number


def _value(value: int | bytes, field: Field) -> Any:
    kind = field.type
    if kind in SCALARS:
        return _scalar(value, kind)
    data = _bytes(value)
    if kind == "Time":
        if not data:  # how a zero metav1.Time marshals
            return None
        parts = dict(_by_number(data))
        seconds, nanos = _int(parts.get(1, 0)), _int(parts.get(2, 0))
        if seconds == GO_ZERO_TIME and not nanos:
            return None
        when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "Quantity":
        return _bytes(dict(_by_number(data)).get(1, b"")).decode() or None
    if kind == "IntOrString":
        parts = dict(_by_number(data))
        if _int(parts.get(1, 0)) == 1:
            return _bytes(parts.get(3, b"")).decode()
        return _scalar(parts.get(2, 0), "int32")
    if kind == "ExtraValue":  # a Go []string, wrapped in a message so a map may hold it
        return [_bytes(item).decode() for number, item in _by_number(data) if number == 1]
    if kind == "FieldsV1":
        raw = _bytes(dict(_by_number(data)).get(1, b""))
        return json.loads(raw) if raw else None
    return _message(data, kind)
