"""The MCP tools, derived from the command table (:mod:`klaw.protocol.table`), not listed by hand.

Every entry of the table with an HTTP route is a tool, unless it is left out on purpose
(:data:`EXCLUDED_ROLES`: the admin's token and database commands; an entry whose route is
another command's, ``serve=False``). A tool's

- name is the table's route name (``list_runs``, ``submit_run``);
- description is the command's docstring (or, without one, what its route does);
- input schema is the command Struct's JSON Schema (``msgspec.json.schema``) without its
  ``type`` tag and ``version``, ``selection`` spelled ``select`` as on the command line, with
  the bounds of :data:`CAPS` and, on a mutating tool, ``dry_run``;
- required role is the table's; it is mutating when its route is a POST that the table does
  not mark ``safe`` (a POST only to send its body, like ``validate_workflows``).

So a command added to the table later is a tool at once, with no change here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from klaw.api.http.auth import Role
from klaw.errors import InvalidCommandError
from klaw.protocol import table
from klaw.protocol.commands import Command, SubmitRun

EXCLUDED_ROLES: Final = frozenset({"admin"})  # tokens and database upkeep: not for assistants
RENAMES: Final[Mapping[str, str]] = {"selection": "select"}  # command field -> argument
MAX_LOG_LINES: Final = 500  # read_logs: the most lines one call returns
MAX_PREVIEW_ROWS: Final = 100  # preview_rows: the most rows one call returns
MAX_LISTED: Final = 500  # list_runs: the most runs one call returns
# The bounds of a tool's arguments: field -> (default, maximum). A default (None: none) fills
# a field left out or null; a value above the maximum is refused, naming the field.
Cap = tuple[int | None, int]
CAPS: Final[Mapping[str, Mapping[str, Cap]]] = {
    "read_logs": {"limit": (200, MAX_LOG_LINES), "tail": (None, MAX_LOG_LINES)},
    "preview_rows": {"limit": (20, MAX_PREVIEW_ROWS)},
    "list_runs": {"limit": (50, MAX_LISTED)},
}
# Fields a tool does not take: the server's settings decide them (and HTTP refuses them).
HIDDEN: Final[Mapping[type[msgspec.Struct], frozenset[str]]] = {
    SubmitRun: frozenset({"executor", "max_workers", "resume"}),
}
DRY_RUN: Final = "dry_run"
_ROLE_REF: Final = re.compile(r":\w+:`~?(?:[\w.]+\.)?([^`]+)`")


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its command, who may call it, and how its arguments become the command."""

    name: str
    command: type[msgspec.Struct]
    description: str
    role: Role
    mutating: bool
    method: str
    path: str
    input_schema: dict[str, Any] = field(repr=False)
    caps: Mapping[str, Cap] = field(default_factory=dict)

    def build(self, arguments: Mapping[str, Any]) -> Command:
        """The command these arguments make: InvalidCommandError naming the field for an
        unknown, missing, mistyped or out-of-range one."""
        known = set(self.input_schema["properties"]) - {DRY_RUN}
        unknown = sorted(set(arguments) - known)
        if unknown:
            raise InvalidCommandError(
                f"{self.name} takes no argument {unknown[0]!r}.",
                command=self.name,
                field=unknown[0],
                hint=f"Its arguments: {', '.join(sorted(known)) or 'none'}.",
            )
        fields: dict[str, Any] = {}
        for name, value in arguments.items():
            fields[_FIELDS.get(name, name)] = value
        for name, (default, maximum) in self.caps.items():
            given = fields.get(name)
            if given is None:
                if default is not None:
                    fields[name] = default
            elif isinstance(given, int) and not isinstance(given, bool) and given > maximum:
                raise InvalidCommandError(
                    f"{self.name}: {name} is at most {maximum} (got {given}).",
                    command=self.name,
                    field=name,
                    hint=f"Ask for at most {maximum} and page on from the last one seen.",
                )
        try:
            built = msgspec.convert({"type": self.command.__name__, **fields}, self.command)
        except msgspec.ValidationError as exc:
            raise _invalid(self.name, exc) from None
        return built  # type: ignore[return-value]  # every command of the table is a Command


_FIELDS: Final = {argument: name for name, argument in RENAMES.items()}
_PATH: Final = re.compile(r"at `\$\.(\w+)([^`]*)`")
_MISSING: Final = re.compile(r"field `(\w+)`")


def _invalid(tool: str, exc: msgspec.ValidationError) -> InvalidCommandError:
    message = str(exc)
    found = _PATH.search(message) or _MISSING.search(message)
    name = RENAMES.get(found.group(1), found.group(1)) if found else None
    message = _PATH.sub(
        lambda m: f"at `{RENAMES.get(m.group(1), m.group(1))}{m.group(2)}`", message
    )
    message = _MISSING.sub(lambda m: f"field `{RENAMES.get(m.group(1), m.group(1))}`", message)
    message = message.replace("`$`", "the arguments")
    return InvalidCommandError(
        f"{tool}: {message}.",
        command=tool,
        field=name,
        hint="tools/list gives each tool's JSON Schema; send arguments that fit it.",
    )


def _capped(prop: dict[str, Any], cap: Cap) -> dict[str, Any]:
    """``prop`` (an integer, or an integer or null) at most the cap's maximum, with its default."""
    default, maximum = cap
    choices = prop.get("anyOf")
    if choices is not None:
        prop["anyOf"] = [
            {**c, "maximum": min(c.get("maximum", maximum), maximum)}
            if c.get("type") == "integer"
            else c
            for c in choices
        ]
    else:
        prop["maximum"] = min(prop.get("maximum", maximum), maximum)
    prop["default"] = default
    return prop


def _schema(cls: type[msgspec.Struct], caps: Mapping[str, Cap], mutating: bool) -> Any:
    """The command's JSON Schema as a tool's input: its own object, the other definitions
    (enums) kept under ``$defs``."""
    full = msgspec.json.schema(cls)
    defs: dict[str, Any] = dict(full.get("$defs", {}))
    own = defs.pop(cls.__name__)
    hidden = HIDDEN.get(cls, frozenset()) | {"type", "version"}
    properties: dict[str, Any] = {}
    for name, given in own.get("properties", {}).items():
        if name in hidden:
            continue
        prop = _capped(dict(given), caps[name]) if name in caps else dict(given)
        properties[RENAMES.get(name, name)] = prop
    if mutating:
        properties[DRY_RUN] = {
            "type": "boolean",
            "default": False,
            "description": "Only say what the call would do (for submit_run: the plan); "
            "change nothing.",
        }
    required = [RENAMES.get(n, n) for n in own.get("required", ()) if n not in hidden]
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    if defs:
        schema["$defs"] = defs
    return schema


def describe(cls: type[msgspec.Struct], http: table.Http) -> str:
    """The command's docstring, made plain (no reST roles); its route when it has none."""
    doc = cls.__doc__
    if not doc or doc == msgspec.Struct.__doc__:
        words = http.name.replace("_", " ")
        return f"{words[:1].upper()}{words[1:]} ({http.method} {table.PREFIX}{http.path})."
    text = _ROLE_REF.sub(lambda m: m.group(1), doc).replace("``", "`")
    return " ".join(text.split())


def derive() -> dict[str, ToolSpec]:
    """Every tool of the command table, by name."""
    found: dict[str, ToolSpec] = {}
    for cls, http in table.HTTP.items():
        if http is None or not http.serve or http.role in EXCLUDED_ROLES:
            continue
        mutating = http.method == "POST" and not http.safe
        caps = CAPS.get(http.name, {})
        description = describe(cls, http)
        if mutating:
            description += f" Changes things (role {http.role}); dry_run=true only says what."
        found[http.name] = ToolSpec(
            name=http.name,
            command=cls,
            description=description,
            role=Role[http.role.upper()],
            mutating=mutating,
            method=http.method,
            path=table.PREFIX + http.path,
            input_schema=_schema(cls, caps, mutating),
            caps=caps,
        )
    return found


def excluded() -> dict[type[msgspec.Struct], str]:
    """The table's commands that are no tool, each with why."""
    why: dict[type[msgspec.Struct], str] = {}
    for cls, http in table.HTTP.items():
        if http is None:
            why[cls] = "no HTTP route (a remote agent's call)"
        elif not http.serve:
            why[cls] = f"answered by the route of another command ({http.name})"
        elif http.role in EXCLUDED_ROLES:
            why[cls] = f"needs the {http.role} role"
    return why


TOOLS: Final = derive()
