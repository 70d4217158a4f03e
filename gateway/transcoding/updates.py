"""Writes (creates and masked updates) against an upstream that replaces some objects
whole and ignores some fields: completing the objects first, checking the answer after.

* A field marked ``(gagiteck.v1.field).whole`` is replaced as a whole by the upstream
  when an update sends it. A FieldMask naming only part of it (``config.temperature``)
  would reset the rest, so the gateway reads the resource first and sends the whole
  object: the current one with the masked parts changed.
* An enum field an update sends (a status) that comes back otherwise was not applied —
  the deployed service's update schemas have no status, and FastAPI ignores what a
  schema lacks. The call then ends with FAILED_PRECONDITION
  (:class:`~gateway.errors.UpstreamIgnored`) instead of answering the unchanged resource
  as if the change had been made. (A create answers the resource it made, whose status
  the caller sees.)
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from gateway.errors import UpstreamIgnored
from gateway.transcoding.codec import field_rule


@dataclass(frozen=True, slots=True)
class UpdateRule:
    """What a write needs: a POST or PATCH whose body is a message of the answer's type
    (a create), with a FieldMask for an update."""

    body_field: str
    mask_field: str | None
    whole: frozenset[str]
    """Fields of the body the upstream replaces as a whole."""
    checked: tuple[str, ...]
    """Enum fields of the body whose change the answer must show."""

    @classmethod
    def of(
        cls, body_field: str, mask_field: str | None, body: Descriptor, response: Descriptor
    ) -> UpdateRule | None:
        """The rule of a write, or None when nothing in its body needs one."""
        whole = frozenset(
            f.name
            for f in body.fields
            if f.message_type is not None and field_rule(f).whole and mask_field is not None
        )
        checked = tuple(
            f.name
            for f in body.fields
            if f.enum_type is not None
            and not f.is_repeated
            and body is response
            and mask_field is not None
        )
        if not whole and not checked:
            return None
        return cls(body_field, mask_field, whole, checked)

    def _paths(self, request: Message) -> list[str]:
        if self.mask_field is None:
            return []
        return list(getattr(request, self.mask_field).paths)

    def needs_current(self, request: Message) -> bool:
        """Whether the mask names part of a whole field (so the resource must be read)."""
        paths = self._paths(request)
        return any("." in path and path.partition(".")[0] in self.whole for path in paths)

    def completed(self, request: Message, current: Message) -> Message:
        """A copy of ``request`` whose whole fields are the current ones with the masked
        parts changed, and whose mask names them whole."""
        assert self.mask_field is not None  # needs_current said so
        merged = type(request)()
        merged.CopyFrom(request)
        body = getattr(merged, self.body_field)
        mask = getattr(merged, self.mask_field)
        paths: list[str] = []
        for name in sorted(self.whole):
            parts = [p.split(".", 1)[1] for p in mask.paths if p.startswith(name + ".")]
            if not parts or name in mask.paths:
                continue
            whole = type(getattr(body, name))()
            whole.CopyFrom(getattr(current, name))
            _copy_paths(getattr(body, name), whole, parts)
            getattr(body, name).CopyFrom(whole)
            paths.append(name)
        kept = [p for p in mask.paths if p.partition(".")[0] not in paths]
        del mask.paths[:]
        mask.paths.extend([*kept, *paths])
        return merged

    def check_applied(self, request: Message, response: Message, host: str, route: str) -> None:
        """Raise UpstreamIgnored when an enum field the write sent came back otherwise."""
        body = getattr(request, self.body_field)
        paths = self._paths(request)
        for name in self.checked:
            sent = name in paths if paths else getattr(body, name) != 0
            if sent and getattr(response, name) != getattr(body, name):
                raise UpstreamIgnored(name, host, route)


def _copy_paths(source: Message, target: Message, paths: list[str]) -> None:
    """Copy the fields named by dotted ``paths`` from ``source`` into ``target``."""
    for path in paths:
        head, _, rest = path.partition(".")
        if rest:
            _copy_paths(getattr(source, head), getattr(target, head), [rest])
            continue
        field = source.DESCRIPTOR.fields_by_name[head]
        if field.is_repeated:
            del getattr(target, head)[:]
            getattr(target, head).extend(getattr(source, head))
        elif field.message_type is not None:
            if source.HasField(head):
                getattr(target, head).CopyFrom(getattr(source, head))
            else:
                target.ClearField(head)
        else:
            setattr(target, head, getattr(source, head))
