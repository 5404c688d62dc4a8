"""Typed domain events: frozen dataclasses, one module per family, each with a stable type
string and payload version. The store only sees their encoded form (`tracker.records.NewEvent`);
`encode` and `decode` here go between the two, upcasting old payloads on the way in.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol, TypeVar

from tracker.records import JSONObject, NewEvent, RecordedEvent, uuid7


class DomainEvent(Protocol):
    TYPE: ClassVar[str]
    VERSION: ClassVar[int]


E = TypeVar("E", bound=type)

_CLASSES: dict[str, type] = {}
# (type, payload version) -> function turning that payload into the next version's.
_UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def event_type(cls: E) -> E:
    """Register a frozen dataclass as the event class for its TYPE string."""
    type_name = cls.TYPE  # type: ignore[attr-defined]
    if type_name in _CLASSES:
        raise ValueError(f"event type {type_name!r} is registered twice")
    _CLASSES[type_name] = cls
    return cls


def upcaster(
    type_name: str, from_version: int
) -> Callable[
    [Callable[[dict[str, Any]], dict[str, Any]]], Callable[[dict[str, Any]], dict[str, Any]]
]:
    """Register a function that turns a payload of `from_version` into `from_version + 1`."""

    def register(
        function: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> Callable[[dict[str, Any]], dict[str, Any]]:
        _UPCASTERS[(type_name, from_version)] = function
        return function

    return register


_SCALARS = (str, int, float, type(None))


def payload_of(event: Any) -> dict[str, Any]:
    """An event's fields as its payload: what dataclasses.asdict gives, without its deep copy
    (a fifth of a poll's recording time) where every field is a scalar or a tuple of them."""
    payload = {name: getattr(event, name) for name in _field_names(type(event))}  # type: ignore[arg-type]
    for value in payload.values():
        if not isinstance(value, _SCALARS) and not (
            type(value) is tuple and all(isinstance(item, _SCALARS) for item in value)
        ):
            return dataclasses.asdict(event)
    return payload


def encode(event: Any, metadata: Mapping[str, Any] | None = None, event_id: Any = None) -> NewEvent:
    """A typed event as the store takes it."""
    payload = payload_of(event)
    return NewEvent(
        event.TYPE,
        payload,
        event.VERSION,
        dict(metadata or {}),
        event_id if event_id is not None else uuid7(),
    )


def decode(recorded: RecordedEvent) -> Any:
    """A recorded event as its typed class, upcast to the current payload version."""
    cls = _CLASSES.get(recorded.event_type)
    if cls is None:
        raise KeyError(f"no event class for type {recorded.event_type!r}")
    payload: JSONObject = recorded.payload
    version = recorded.schema_version
    while version < cls.VERSION:  # type: ignore[attr-defined]
        payload = _UPCASTERS[(recorded.event_type, version)](dict(payload))
        version += 1
    return _build(cls, payload)


def _build(cls: type, payload: JSONObject) -> Any:
    names = _field_names(cls)
    return cls(
        **{
            name: tuple(value) if isinstance(value, list) else value
            for name, value in payload.items()
            if name in names
        }
    )


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    """Asked for every event a replay decodes: `dataclasses.fields` builds its answer anew."""
    return frozenset(field.name for field in dataclasses.fields(cls))
