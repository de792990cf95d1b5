"""Reply templates as YAML files: parsing with errors that name file, line and problem.

A file holds a list of templates (one file per skill is usual); docs/paraphrasing.md
("Templates") shows the format with an example.

In a line, ``{name}`` is a variable, ``{count+noun}`` an integer variable with a noun variable
that agrees with it in number (and case), ``{count/word}`` the same with a fixed word, and
``{{``/``}}`` are literal braces. Lines of a language are grouped by their set of variables; each
group is paraphrased on its own. Every group must exist in every language of the template (the
assistant utters one set of values, whatever the language).

The file model is pydantic dataclasses (a variable is built and compared like a plain one); the
YAML reader keeps every value's line, so that each error names the file, the line and the
problem. No Dagster here: this is plain logic, tested directly.
"""

import dataclasses
import hashlib
import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_core import PydanticCustomError

from chara_resources.languages import LANGUAGES, SOURCE_LANGUAGE

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*\Z")
_WORD = re.compile(r"[^\W\d_][^\W\d_' -]*\Z")  # letters, inner spaces, hyphens, apostrophes
_MAX_LINES = 200
_MAX_TEXT = 2000


class TemplateError(ValueError):
    """A template file that cannot be used: the file, the line (1-based) and the problem."""

    def __init__(self, file: str | Path, line: int | None, problem: str) -> None:
        self.file = str(file)
        self.line = line
        self.problem = problem
        where = f"{self.file}, line {line}" if line else self.file
        super().__init__(f"{where}: {problem}")


# --- reading YAML with line numbers -----------------------------------------------------------


class _Str(str):
    """A YAML scalar as written (``5`` and ``yes`` stay text), with its line, its tag and what
    YAML makes of it (``value``: 5 for ``5``, True for ``yes``)."""

    line: int
    tag: str
    value: Any


class _Map(dict):
    line: int
    key_lines: dict[str, int]


class _List(list):
    line: int


@dataclass(frozen=True)
class _Alias:
    """A YAML alias: refused (aliases multiply work), reported where it is used."""

    line: int


def _read_yaml(text: str, file: str) -> Any:
    """The file's data (:class:`_Map`, :class:`_List`, :class:`_Str`, None) with lines."""
    try:
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TemplateError(file, mark and mark.line + 1, f"invalid YAML: {problem}") from None
    except (ValueError, RecursionError) as exc:  # e.g. NUL characters, absurd nesting
        raise TemplateError(file, None, f"invalid YAML: {exc}") from None
    if root is None:
        raise TemplateError(file, None, "empty file: expected 'templates:' with a list")
    constructor, seen = yaml.constructor.SafeConstructor(), set()

    def convert(node: yaml.Node) -> Any:
        if id(node) in seen:
            return _Alias(node.start_mark.line + 1)
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            value: Any = _List(map(convert, node.value))
        elif isinstance(node, yaml.MappingNode):
            value = _Map()
            value.key_lines = {}
            for key_node, item in node.value:
                key, line = str(key_node.value), key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":null"):
                    raise TemplateError(file, line, "keys must be plain names")
                if key in value:
                    problem = f"duplicate key {key!r} (first on line {value.key_lines[key]})"
                    raise TemplateError(file, line, problem)
                value.key_lines[key], value[key] = line, convert(item)
        elif node.tag.endswith(":null"):
            return None
        else:
            value = _Str(node.value)
            value.tag, value.value = node.tag.rsplit(":", 1)[-1], value
            if value.tag in ("int", "bool"):
                try:
                    value.value = constructor.construct_object(node)
                except Exception:
                    value.value = None  # not a valid number after all
        value.line = node.start_mark.line + 1
        return value

    try:
        return convert(root)
    except RecursionError:
        raise TemplateError(file, None, "the file is nested too deeply") from None


def _kind(value: Any) -> str:
    if value is None or isinstance(value, (dict, list)):
        return "nothing" if value is None else "a mapping" if isinstance(value, dict) else "a list"
    return f"{getattr(value, 'tag', type(value).__name__)} {str(value)!r}"


def _fail(problem: str, **where: Any) -> PydanticCustomError:
    """A validation error worded for a person; ``line=`` (the file's) or ``key=`` (a key of the
    mapping being validated) says where it is."""
    return PydanticCustomError("template", "{problem}", {"problem": problem, **where})


_NEEDS = {  # what a required field is for: "needs 'x' (...)"
    "name": "the assistant's template name",
    "lines": "language -> list of lines",
    "type": "int, options or text",
    "description": "the LLM reads it",
    "examples": "used in prompts",
}


def _template_error(exc: ValidationError, root: Any, file: str) -> TemplateError:
    """The first of pydantic's errors in the file, with its line and in a person's words.

    An error's location is followed through the file's data (steps that are not in the file,
    such as a union's tag, are skipped) to the value, whose line it names."""
    found = []
    for error in exc.errors():
        node, line, words, key_line, tag = root, getattr(root, "line", None), [], None, None
        for part in error["loc"]:
            if part == "[key]":
                line = key_line
            elif part == tag:
                tag = None
            elif isinstance(node, dict) and part in node:
                key_line, node = node.key_lines[part], node[part]
                line = getattr(node, "line", key_line)
                tag = node.get("type") if isinstance(node, dict) else None
                words += [f"variable {part!r}"] if words[-1:] == ["variables"] else [str(part)]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node, line, tag = node[part], getattr(node[part], "line", line), None
                name = node.get("name") if isinstance(node, dict) else None
                if words[-1:] == ["templates"]:
                    words += [f"template {name!r}" if isinstance(name, str) else "a template"]
        ctx, kind = error.get("ctx") or {}, error["type"]
        line = ctx.get("line") or (node.key_lines[ctx["key"]] if "key" in ctx else line)
        if isinstance(node, _Alias):
            problem = "YAML anchors and aliases are not supported in templates"
        elif kind in ("missing", "union_tag_not_found") and isinstance(node, dict):
            missing = "type" if kind == "union_tag_not_found" else error["loc"][-1]
            problem = f"needs '{missing}'" + (f" ({_NEEDS[missing]})" if missing in _NEEDS else "")
        elif kind == "union_tag_invalid":
            problem = f"unknown type {ctx['tag']!r} (int, options or text)"
        elif kind in ("template", "value_error"):
            problem = str(ctx.get("problem") or ctx["error"])
        elif kind == "too_short":
            problem = "must not be empty"
        elif kind.endswith("_type"):  # list_type, dict_type, dataclass_type, ...
            wanted = "a list" if kind in ("list_type", "tuple_type") else "a mapping"
            problem = f"must be {wanted}, found {_kind(node)}"
        else:
            problem = error["msg"]
        where = ", ".join(w for w in words if w not in ("templates", "variables")) or "the file"
        # A missing field is reported last: a misplaced one is often the reason.
        found.append((line is None, kind == "missing", line or 0, line, f"{where}: {problem}"))
    return TemplateError(file, *min(found)[3:])


# --- the parsed form --------------------------------------------------------------------------


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be text, found {_kind(value)}")
    if not value.strip() or len(value.strip()) > _MAX_TEXT:
        too_long = f"is longer than {_MAX_TEXT} characters"
        raise ValueError(too_long if value.strip() else "must not be empty")
    return str(value.strip())


def _yaml(kind: type, what: str) -> PlainValidator:
    """A YAML int or bool (``"5"``, quoted, is text, not a number)."""

    def check(value: Any) -> Any:
        if type(result := getattr(value, "value", value)) is not kind:
            raise ValueError(f"must be {what}, found {_kind(value)}")
        return result

    return PlainValidator(check)


def _matching(pattern: re.Pattern, problem: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} {problem}")
        return value

    return AfterValidator(check)


def _language(code: str) -> str:
    if code not in LANGUAGES and code != "*":  # "*": any language (replies_to as a list)
        raise ValueError(f"unknown language {code!r}; known: {', '.join(sorted(LANGUAGES))}")
    return code


Prose = Annotated[str, PlainValidator(_text)]
Language = Annotated[str, AfterValidator(_language)]
Identifier = Annotated[str, _matching(_IDENTIFIER, "is not a variable name")]


def _texts(item: Any, least: int) -> Any:
    """A list of texts (or of lines) in the file: one text, or a short list."""
    return Annotated[
        list[item],
        BeforeValidator(lambda value: [value] if isinstance(value, str) else value),
        Field(min_length=least, max_length=_MAX_LINES),
    ]


class _FromFile:
    """Unknown fields are errors that list the known ones."""

    _derived: ClassVar[set[str]] = set()  # fields that are not written in the file

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        known = {f.name for f in dataclasses.fields(cls) if f.init} - cls._derived
        for key in data if isinstance(data, dict) else ():
            if key not in known | cls._derived:
                listed = ", ".join(sorted(known))
                raise _fail(f"unknown field {key!r} (known: {listed})", key=key)
        return data


_model = pydantic_dataclass(config=ConfigDict(extra="forbid"))
_frozen = pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))


@_frozen
class _Variable(_FromFile):
    name: str  # the key in ``variables``
    description: Prose
    _derived: ClassVar[set[str]] = {"name"}


@_frozen
class IntVariable(_Variable):
    min: Annotated[int, _yaml(int, "a whole number")]
    max: Annotated[int, _yaml(int, "a whole number")]
    ordinal: Annotated[bool, _yaml(bool, "true or false")] = False
    type: Literal["int"] = field(default="int", repr=False, compare=False)

    @model_validator(mode="after")
    def _range(self) -> "IntVariable":
        if not 0 <= self.min <= self.max <= 10**9:
            raise ValueError(f"need 0 <= min <= max <= 1e9, got {self.min}..{self.max}")
        return self


def _option(value: Any) -> Any:
    """``word``, or ``{value: v, <language>: word, ...}``, as an :class:`Option`'s fields."""
    if not isinstance(value, dict):
        return {"value": value, "words": {}} if isinstance(value, str) else value
    words = {k: v for k, v in value.items() if k != "value"}
    return {"value": value["value"], "words": words} if "value" in value else {"words": words}


@_frozen
class Option:
    value: Prose
    words: dict[Language, Prose]  # language -> word; missing languages use ``value``

    def word(self, language: str) -> str:
        return self.words.get(language, self.value)


def _distinct_options(items: Any) -> Any:
    seen: dict[str, int] = {}
    for item in items if isinstance(items, list) else ():
        value = item.get("value") if isinstance(item, dict) else item
        if isinstance(value, _Str) and value.strip() in seen:
            first = seen[value.strip()]
            problem = f"duplicate option {value.strip()!r} (first on line {first})"
            raise _fail(problem, line=value.line)
        if isinstance(value, _Str):
            seen[value.strip()] = value.line
    return items


@_frozen
class OptionsVariable(_Variable):
    options: Annotated[
        tuple[Annotated[Option, BeforeValidator(_option)], ...],
        BeforeValidator(_distinct_options),
        Field(min_length=1),
    ]
    type: Literal["options"] = field(default="options", repr=False, compare=False)


@_frozen
class TextVariable(_Variable):
    examples: Annotated[tuple[Prose, ...], Field(min_length=1)]
    type: Literal["text"] = field(default="text", repr=False, compare=False)


Variable = IntVariable | OptionsVariable | TextVariable


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Slot:
    """A variable in a line; with ``count`` set it is plural agreement ``{count+noun}`` (noun a
    variable) or ``{count/word}`` (noun a fixed word, in ``word``)."""

    name: str  # the noun variable, the plain variable, or "" for a fixed word
    count: str = ""
    word: str = ""

    @property
    def fragment(self) -> str:
        """How the slot is written in a line (and in prompts)."""
        if not self.count:
            return "{" + self.name + "}"
        if self.word:
            return "{" + self.count + "/" + self.word + "}"
        return "{" + self.count + "+" + self.name + "}"

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(v for v in (self.count, self.name) if v)


Part = Text | Slot


@dataclass(frozen=True)
class Line:
    text: str  # as written in the file
    parts: tuple[Part, ...]
    number: int  # line in the file

    @property
    def slots(self) -> tuple[Slot, ...]:
        return tuple(p for p in self.parts if isinstance(p, Slot))

    @property
    def variables(self) -> tuple[str, ...]:
        """Sorted names of the variables the line uses."""
        return tuple(sorted({v for s in self.slots for v in s.variables}))


def _line(value: Any) -> Line:
    text = _text(value)
    try:
        return Line(text, parse_line(text), getattr(value, "line", 0))
    except ValueError as exc:
        raise ValueError(f"line {text!r}: {exc}") from None


def _named(variables: Any) -> Any:
    """Each variable's fields with its name (its key)."""
    if not isinstance(variables, dict):
        return variables
    for key, value in variables.items():
        if isinstance(value, _Map) and "name" in value:
            raise _fail(f"variable {key!r}: its key is its name", line=value.key_lines["name"])
    return {k: {**v, "name": k} if isinstance(v, dict) else v for k, v in variables.items()}


Variables = dict[Identifier, Annotated[Variable, Field(discriminator="type")]]


@_model
class TemplateSpec(_FromFile):
    name: Annotated[Prose, _matching(_TEMPLATE_NAME, "is not a name (letters, digits, _.:-)")]
    lines: Annotated[
        dict[Language, _texts(Annotated[Line, PlainValidator(_line)], 1)], Field(min_length=1)
    ]
    variables: Annotated[Variables, BeforeValidator(_named)] = field(default_factory=dict)
    context: Prose = ""
    replies_to: Annotated[  # language ("*": any) -> what the user said
        dict[Language, _texts(Prose, 0)],
        BeforeValidator(lambda value: value if isinstance(value, dict) else {"*": value}),
    ] = field(default_factory=dict)
    must_express: Prose = ""
    file: str = field(default="", init=False)
    line: int = field(default=0, init=False)
    fingerprint: str = field(default="", init=False)  # changes whenever the definition does

    @model_validator(mode="wrap")
    @classmethod
    def _whole_template(cls, data: Any, handler: Any, info: ValidationInfo) -> "TemplateSpec":
        spec = handler(data)
        spec.file = (info.context or {}).get("file", "<text>")
        spec.line = getattr(data, "line", 0)
        _check(spec, getattr(data, "key_lines", {}))
        spec.fingerprint = _fingerprint(spec)
        return spec

    @property
    def languages(self) -> list[str]:
        return sorted(self.lines)

    def groups(self, language: str) -> "list[Group]":
        """The template's lines in ``language`` grouped by variable set (sorted by tag)."""
        by_tag: dict[str, list[Line]] = {}
        for line in self.lines.get(language, []):
            by_tag.setdefault(variables_tag(line.variables), []).append(line)
        return [Group(self, language, tag, by_tag[tag]) for tag in sorted(by_tag)]

    def replies_to_in(self, language: str) -> list[str]:
        return self.replies_to.get(language, []) + self.replies_to.get("*", [])


@dataclass
class Group:
    """Lines of one template and language that use the same variables: paraphrased together."""

    template: TemplateSpec
    language: str
    tag: str  # sorted variable names joined by commas (Avatar's ``used_variables_tag``)
    lines: list[Line]

    @property
    def variable_names(self) -> list[str]:
        return [v for v in self.tag.split(",") if v]

    @property
    def slots(self) -> list[Slot]:
        """The slots of the group's first line (every line of the group has the same
        variables; slots may differ, e.g. ``{count+unit}`` vs ``{count}`` and ``{unit}``)."""
        return list(self.lines[0].slots)

    @property
    def key(self) -> str:
        return f"{self.template.name}|{self.language}|{self.tag}"


def variables_tag(names: Iterable[str]) -> str:
    """Avatar's variables tag: the sorted, distinct variable names joined by commas."""
    return ",".join(sorted(set(names)))


def _check(spec: TemplateSpec, key_lines: dict[str, int]) -> None:
    """What needs the whole template: the variables of each line, unused variables, and the
    same variable sets in every language."""
    for line in (line for lines in spec.lines.values() for line in lines):
        if problem := _line_problem(spec.variables, line):
            raise _fail(f"line {line.text!r}: {problem}", line=line.number)
    used = {v for lines in spec.lines.values() for line in lines for v in line.variables}
    if unused := sorted(set(spec.variables) - used):
        raise _fail(f"variable {unused[0]!r} is never used", line=key_lines.get("variables"))
    tags = {code: {variables_tag(line.variables) for line in ls} for code, ls in spec.lines.items()}
    reference = min(tags, key=lambda c: (c != SOURCE_LANGUAGE, c))
    for code, found in sorted(tags.items()):
        if found != tags[reference]:
            missing, extra = sorted(tags[reference] - found), sorted(found - tags[reference])
            detail = [f"no line with {_tags_text(missing)}"] if missing else []
            detail += [f"lines with {_tags_text(extra)} that {reference} lacks"] if extra else []
            raise _fail(
                f"the variables differ between languages: {code} has {' and '.join(detail)} "
                f"(compared with {reference}); every language needs a line for each set",
                line=spec.lines[code][0].number,
            )


def _line_problem(variables: dict[str, Variable], line: Line) -> str | None:
    for slot in line.slots:
        for name in slot.variables:
            if name not in variables:
                known = ", ".join(sorted(variables)) or "none declared"
                return f"unknown variable {name!r} (variables: {known})"
        if slot.count and not isinstance(variables[slot.count], IntVariable):
            return f"in {slot.fragment}, {slot.count!r} must be an int variable"
        if slot.count and slot.name and isinstance(variables[slot.name], IntVariable):
            return f"in {slot.fragment}, {slot.name!r} must be a noun (options or text)"
    used = [name for slot in line.slots for name in slot.variables]
    twice = sorted({name for name in used if used.count(name) > 1})
    return f"variable {twice[0]!r} is used twice in one line" if twice else None


def _tags_text(tags: list[str]) -> str:
    return " or ".join(
        "variables " + ", ".join("{" + v + "}" for v in tag.split(",")) if tag else "no variables"
        for tag in tags
    )


def _fingerprint(spec: TemplateSpec) -> str:
    """A hash of the template's definition, which keys its records on Avatar. Written as the
    first version wrote it (its variables' fields, tuples as lists of reprs): another formula
    would make every template look changed."""

    def fields(variable: Variable) -> dict[str, Any]:
        values = {f.name: getattr(variable, f.name) for f in dataclasses.fields(variable)}
        del values["type"]  # added with pydantic; the first version had no such field
        return {k: list(map(repr, v)) if isinstance(v, tuple) else v for k, v in values.items()}

    data = {
        "name": spec.name,
        "variables": {n: fields(v) for n, v in sorted(spec.variables.items())},
        "lines": {c: [line.text for line in ls] for c, ls in sorted(spec.lines.items())},
        "context": spec.context,
        "replies_to": spec.replies_to,
        "must_express": spec.must_express,
    }
    text = json.dumps(data, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@_model
class _File(_FromFile):
    templates: list[TemplateSpec]

    @model_validator(mode="after")
    def _distinct_names(self) -> "_File":
        first: dict[str, int] = {}
        for spec in self.templates:
            if spec.name in first:
                problem = (
                    f"duplicate template name {spec.name!r} (first on line {first[spec.name]})"
                )
                raise _fail(problem, line=spec.line)
            first[spec.name] = spec.line
        return self


_FILE = TypeAdapter(_File)


# --- lines ------------------------------------------------------------------------------------


def parse_line(text: str) -> tuple[Part, ...]:
    """Split a line into text and slots; raises ValueError with the problem (no file/line)."""
    parts: list[Part] = []
    buffer: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if text.startswith("{{", i) or text.startswith("}}", i):
            buffer.append(char)
            i += 2
            continue
        if char == "}":
            raise ValueError(f"unbalanced brace: '}}' at position {i + 1} closes nothing")
        if char != "{":
            buffer.append(char)
            i += 1
            continue
        end = text.find("}", i + 1)
        inner_open = text.find("{", i + 1)
        if end < 0 or (0 <= inner_open < end):
            raise ValueError(f"unbalanced brace: '{{' at position {i + 1} is not closed")
        if buffer:
            parts.append(Text("".join(buffer)))
            buffer = []
        parts.append(_parse_slot(text[i + 1 : end].strip()))
        i = end + 1
    if buffer:
        parts.append(Text("".join(buffer)))
    return tuple(parts)


def _parse_slot(inner: str) -> Slot:
    if "+" in inner:
        count, _, noun = (s.strip() for s in inner.partition("+"))
        for name in (count, noun):
            if not _IDENTIFIER.match(name):
                raise ValueError(f"'{{{inner}}}': {name!r} is not a variable name")
        return Slot(name=noun, count=count)
    if "/" in inner:
        count, _, word = (s.strip() for s in inner.partition("/"))
        if not _IDENTIFIER.match(count):
            raise ValueError(f"'{{{inner}}}': {count!r} is not a variable name")
        if not _WORD.match(word):
            raise ValueError(f"'{{{inner}}}': {word!r} is not a word")
        return Slot(name="", count=count, word=word)
    if not _IDENTIFIER.match(inner):
        raise ValueError(
            f"'{{{inner}}}' is not a variable: use {{name}}, {{count+noun}} or {{count/word}} "
            "(names: letters, digits and '_'); write {{ and }} for literal braces"
        )
    return Slot(name=inner)


def parse_templates(text: str, file: str | Path = "<text>") -> list[TemplateSpec]:
    """The templates in one file's text.

    Raises:
        TemplateError: naming the file, the line and the problem; nothing else escapes.
    """
    file = str(file)
    root = _read_yaml(text, file)
    try:
        return _FILE.validate_python(root, context={"file": file}).templates
    except ValidationError as exc:
        raise _template_error(exc, root, file) from None


def load_template_file(path: Path) -> list[TemplateSpec]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateError(path, None, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise TemplateError(path, None, f"cannot read the file: {exc.strerror}") from None
    return parse_templates(text, path)


@dataclass
class TemplateLibrary:
    """Every valid template of a folder, and the errors of the files that are not valid."""

    folder: Path
    templates: dict[str, TemplateSpec] = field(default_factory=dict)
    errors: list[TemplateError] = field(default_factory=list)
    broken_files: set[str] = field(default_factory=set)

    def get(self, name: str) -> TemplateSpec:
        try:
            return self.templates[name]
        except KeyError:
            broken = (
                f"; broken files: {', '.join(sorted(self.broken_files))}" if self.errors else ""
            )
            raise KeyError(f"no template {name!r} in {self.folder}{broken}") from None


def template_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def load_templates(folder: Path) -> TemplateLibrary:
    """Read every template file of ``folder``; a broken file is reported, the others load.
    A name defined in two files is an error of the later file (in sorted order)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"templates folder not found: {folder}")
    library = TemplateLibrary(folder)
    for path in template_files(folder):
        try:
            specs = load_template_file(path)
            for spec in specs:
                if spec.name in library.templates:
                    other = library.templates[spec.name]
                    raise TemplateError(
                        path,
                        spec.line,
                        f"duplicate template name {spec.name!r} (also in "
                        f"{Path(other.file).name}, line {other.line})",
                    )
        except TemplateError as exc:
            library.errors.append(exc)
            library.broken_files.add(path.name)
            continue
        for spec in specs:
            library.templates[spec.name] = spec
    return library


# --- rendering --------------------------------------------------------------------------------


def random_values(spec: TemplateSpec, names: Iterable[str], rng: random.Random) -> dict[str, Any]:
    """A random value for each named variable (option values, ints in range, text examples)."""
    values: dict[str, Any] = {}
    for name in names:
        variable = spec.variables[name]
        if isinstance(variable, IntVariable):
            values[name] = rng.randint(variable.min, variable.max)
        elif isinstance(variable, OptionsVariable):
            values[name] = rng.choice(variable.options).value
        else:
            values[name] = rng.choice(variable.examples)
    return values


Words = dict[str, dict[str, str]]  # variable -> option value -> word (translations)


def missing_words(variable: Variable, language: str) -> list[str]:
    """Option values that have no word of their own in ``language`` (candidates for
    translation; English values are taken as they are)."""
    if not isinstance(variable, OptionsVariable) or language == SOURCE_LANGUAGE:
        return []
    return [o.value for o in variable.options if language not in o.words]


def variable_dub(variable: Variable, language: str, words: Words | None = None) -> Any:
    """The grammatron ``VariableDub`` of a variable in ``language``; ``words`` overrides option
    words (translated ones)."""
    from grammatron import CardinalDub, OptionsDub, OrdinalDub, ToStrDub, VariableDub

    if isinstance(variable, IntVariable):
        number = OrdinalDub if variable.ordinal else CardinalDub
        dub = number(variable.min, variable.max)
    elif isinstance(variable, OptionsVariable):
        own = (words or {}).get(variable.name, {})
        dub = OptionsDub({own.get(o.value, o.word(language)): o.value for o in variable.options})
    else:
        dub = ToStrDub(*variable.examples)
    return VariableDub(variable.name, dub, variable.description)


def slot_dub(spec: TemplateSpec, slot: Slot, language: str, words: Words | None = None) -> Any:
    from grammatron import PluralAgreement

    if not slot.count:
        return variable_dub(spec.variables[slot.name], language, words)
    count = variable_dub(spec.variables[slot.count], language)
    noun = slot.word or variable_dub(spec.variables[slot.name], language, words)
    return PluralAgreement(count, noun)


def sequence_dub(
    spec: TemplateSpec, parts: Iterable[Part], language: str, words: Words | None = None
) -> Any:
    from grammatron import ConstantDub, SequenceDub

    elements = []
    for part in parts:
        if isinstance(part, Text):
            elements.append(ConstantDub(part.text))
        else:
            elements.append(slot_dub(spec, part, language, words))
    return SequenceDub(tuple(elements))


def to_grammatron(spec: TemplateSpec) -> Any:
    """The template as a grammatron ``Template`` named like the assistant's, every language."""
    from grammatron import Template

    sequences = {
        f"{code}_{i}": sequence_dub(spec, line.parts, code)
        for code, lines in sorted(spec.lines.items())
        for i, line in enumerate(lines)
    }
    template = Template(**sequences).with_name(spec.name)
    if spec.context or spec.must_express:
        template = template.context(spec.context or None, reply_details=spec.must_express or None)
    return template


def render(spec: TemplateSpec, parts: Iterable[Part], language: str, values: dict) -> str:
    """One line said with ``values`` (numbers in words, plural agreement applied)."""
    from grammatron import DubParameters

    return sequence_dub(spec, parts, language).to_str(values, DubParameters(language=language))


def examples(group: Group, count: int, seed: int = 0) -> Iterator[str]:
    """``count`` renderings of the group's lines with random values, for prompts."""
    rng = random.Random(seed)
    for i in range(count):
        line = group.lines[i % len(group.lines)]
        values = random_values(group.template, group.variable_names, rng)
        yield render(group.template, line.parts, group.language, values)
