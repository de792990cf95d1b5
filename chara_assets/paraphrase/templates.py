"""Reply templates as YAML files: parsing with errors that name file, line and problem.

A file holds a list of templates (one file per skill is usual)::

    templates:
      - name: timer_set                # the assistant's template name (unique)
        context: The user asked to set a timer.
        replies_to: ["Set a timer for five minutes"]    # or per language: {en: [...], de: [...]}
        must_express: that the timer runs and for how long
        variables:
          index: {type: int, min: 1, max: 5, ordinal: true, description: which timer}
          count: {type: int, min: 1, max: 60, description: how many units}
          unit:
            type: options
            description: the unit of time
            options:
              - {value: minute, en: minute, de: Minute, ru: минута}
              - hour                    # value and word in every language
          name: {type: text, examples: [Sam, Alex], description: the user's name}
        lines:
          en:
            - "The {index} timer is set for {count+unit}."
            - "Timer set."
          de: ["Der {index} Timer läuft {count+unit}.", "Timer gestellt."]

In a line, ``{name}`` is a variable, ``{count+noun}`` an integer variable with a noun variable
that agrees with it in number (and case), ``{count/word}`` the same with a fixed word, and
``{{``/``}}`` are literal braces. Lines of a language are grouped by their set of variables; each
group is paraphrased on its own. Every group must exist in every language of the template (the
assistant utters one set of values, whatever the language).

No Dagster here: this is plain logic, tested directly.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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


# --- the parsed form --------------------------------------------------------------------------


@dataclass(frozen=True)
class IntVariable:
    name: str
    description: str
    min: int
    max: int
    ordinal: bool = False

    kind = "int"


@dataclass(frozen=True)
class Option:
    value: str
    words: dict[str, str]  # language -> word; missing languages use ``value``

    def word(self, language: str) -> str:
        return self.words.get(language, self.value)


@dataclass(frozen=True)
class OptionsVariable:
    name: str
    description: str
    options: tuple[Option, ...]

    kind = "options"


@dataclass(frozen=True)
class TextVariable:
    name: str
    description: str
    examples: tuple[str, ...]

    kind = "text"


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


@dataclass
class TemplateSpec:
    name: str
    file: str
    line: int
    variables: dict[str, Variable]
    lines: dict[str, list[Line]]  # language -> lines
    context: str = ""
    replies_to: dict[str, list[str]] = field(default_factory=dict)  # language ("*": any)
    must_express: str = ""
    fingerprint: str = ""  # changes whenever the template's definition does

    @property
    def languages(self) -> list[str]:
        return sorted(self.lines)

    def groups(self, language: str) -> list[Group]:
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


# --- reading YAML with line numbers -----------------------------------------------------------


class _Reader:
    """Walks composed YAML nodes, so that every problem can name its line."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._constructor = yaml.constructor.SafeConstructor()
        self._seen: set[int] = set()

    def error(self, node: yaml.Node | None, problem: str) -> TemplateError:
        line = node.start_mark.line + 1 if node is not None else None
        return TemplateError(self.file, line, problem)

    def _visit(self, node: yaml.Node) -> None:
        if id(node) in self._seen:
            raise self.error(node, "YAML anchors and aliases are not supported in templates")
        self._seen.add(id(node))

    def mapping(self, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Key -> (key node, value node); duplicate and non-text keys are errors."""
        self._visit(node)
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{what} must be a mapping, found {self.kind(node)}")
        result: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":null"):
                raise self.error(key_node, f"{what}: keys must be plain names")
            key = str(key_node.value)
            if key in result:
                first = result[key][0].start_mark.line + 1
                raise self.error(key_node, f"{what}: duplicate key {key!r} (first on line {first})")
            result[key] = (key_node, value_node)
        return result

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        self._visit(node)
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, f"{what} must be a list, found {self.kind(node)}")
        return list(node.value)

    def text(self, node: yaml.Node, what: str, *, allow_empty: bool = False) -> str:
        """A scalar as the text written in the file (``5`` and ``yes`` stay text)."""
        self._visit(node)
        if not isinstance(node, yaml.ScalarNode) or node.tag.endswith(":null"):
            raise self.error(node, f"{what} must be text, found {self.kind(node)}")
        value = str(node.value).strip()
        if not value and not allow_empty:
            raise self.error(node, f"{what} must not be empty")
        if len(value) > _MAX_TEXT:
            raise self.error(node, f"{what} is longer than {_MAX_TEXT} characters")
        return value

    def integer(self, node: yaml.Node, what: str) -> int:
        self._visit(node)
        if not isinstance(node, yaml.ScalarNode) or not node.tag.endswith(":int"):
            raise self.error(node, f"{what} must be a whole number, found {self.kind(node)}")
        try:
            value = self._constructor.construct_object(node)
        except Exception:
            raise self.error(node, f"{what} is not a valid whole number") from None
        if not isinstance(value, int) or abs(value) > 10**9:
            raise self.error(node, f"{what} must be a whole number between -1e9 and 1e9")
        return value

    def boolean(self, node: yaml.Node, what: str) -> bool:
        self._visit(node)
        if not isinstance(node, yaml.ScalarNode) or not node.tag.endswith(":bool"):
            raise self.error(node, f"{what} must be true or false, found {self.kind(node)}")
        return bool(self._constructor.construct_object(node))

    @staticmethod
    def kind(node: yaml.Node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        tag = node.tag.rsplit(":", 1)[-1]
        return "nothing" if tag == "null" else f"{tag} {node.value!r}"


def _compose(text: str, file: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line = mark.line + 1 if mark else None
        raise TemplateError(file, line, f"invalid YAML: {problem}") from None
    except (ValueError, RecursionError) as exc:  # e.g. NUL characters, absurd nesting
        raise TemplateError(file, None, f"invalid YAML: {exc}") from None


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


# --- templates --------------------------------------------------------------------------------

_TEMPLATE_FIELDS = {"name", "context", "replies_to", "must_express", "variables", "lines"}
_VARIABLE_FIELDS = {
    "int": {"type", "description", "min", "max", "ordinal"},
    "options": {"type", "description", "options"},
    "text": {"type", "description", "examples"},
}


def _unknown(reader: _Reader, fields: dict, allowed: set[str], what: str) -> None:
    for key, (key_node, _) in fields.items():
        if key not in allowed:
            raise reader.error(
                key_node, f"{what}: unknown field {key!r} (known: {', '.join(sorted(allowed))})"
            )


def _language(reader: _Reader, node: yaml.Node, code: str, what: str) -> str:
    if code not in LANGUAGES:
        raise reader.error(
            node, f"{what}: unknown language {code!r}; known: {', '.join(sorted(LANGUAGES))}"
        )
    return code


def _variable(reader: _Reader, name: str, node: yaml.Node) -> Variable:
    fields = reader.mapping(node, f"variable {name!r}")
    if "type" not in fields:
        raise reader.error(node, f"variable {name!r}: missing 'type' (int, options or text)")
    kind = reader.text(fields["type"][1], f"variable {name!r}: type")
    if kind not in _VARIABLE_FIELDS:
        raise reader.error(
            fields["type"][1], f"variable {name!r}: unknown type {kind!r} (int, options or text)"
        )
    _unknown(reader, fields, _VARIABLE_FIELDS[kind], f"variable {name!r}")
    if "description" not in fields:
        raise reader.error(node, f"variable {name!r}: missing 'description' (the LLM needs it)")
    description = reader.text(fields["description"][1], f"variable {name!r}: description")
    if kind == "int":
        for bound in ("min", "max"):
            if bound not in fields:
                raise reader.error(node, f"variable {name!r}: an int variable needs '{bound}'")
        low = reader.integer(fields["min"][1], f"variable {name!r}: min")
        high = reader.integer(fields["max"][1], f"variable {name!r}: max")
        if low > high or low < 0:
            raise reader.error(
                fields["max"][1], f"variable {name!r}: need 0 <= min <= max, got {low}..{high}"
            )
        ordinal = (
            reader.boolean(fields["ordinal"][1], f"variable {name!r}: ordinal")
            if "ordinal" in fields
            else False
        )
        return IntVariable(name, description, low, high, ordinal)
    if kind == "options":
        if "options" not in fields:
            raise reader.error(node, f"variable {name!r}: an options variable needs 'options'")
        options: list[Option] = []
        seen: dict[str, int] = {}
        for item in reader.sequence(fields["options"][1], f"variable {name!r}: options"):
            if isinstance(item, yaml.MappingNode):
                spec = reader.mapping(item, f"variable {name!r}: option")
                if "value" not in spec:
                    raise reader.error(item, f"variable {name!r}: an option needs 'value'")
                value = reader.text(spec["value"][1], f"variable {name!r}: option value")
                words = {}
                for key, (key_node, word_node) in spec.items():
                    if key == "value":
                        continue
                    code = _language(reader, key_node, key, f"variable {name!r}: option")
                    words[code] = reader.text(word_node, f"variable {name!r}: option word")
            else:
                value = reader.text(item, f"variable {name!r}: option")
                words = {}
            if value in seen:
                raise reader.error(
                    item,
                    f"variable {name!r}: duplicate option {value!r} (first on line {seen[value]})",
                )
            seen[value] = item.start_mark.line + 1
            options.append(Option(value, words))
        if not options:
            raise reader.error(fields["options"][1], f"variable {name!r}: no options")
        return OptionsVariable(name, description, tuple(options))
    examples: tuple[str, ...] = ()
    if "examples" in fields:
        nodes = reader.sequence(fields["examples"][1], f"variable {name!r}: examples")
        examples = tuple(reader.text(n, f"variable {name!r}: example") for n in nodes)
    if not examples:
        raise reader.error(
            node, f"variable {name!r}: a text variable needs 'examples' (used in prompts)"
        )
    return TextVariable(name, description, examples)


def _texts_per_language(
    reader: _Reader, node: yaml.Node, what: str, *, any_language: bool
) -> dict[str, list[tuple[str, int]]]:
    """``[a, b]`` (any language, if allowed) or ``{en: [a, b], de: c}`` -> language -> texts."""
    result: dict[str, list[tuple[str, int]]] = {}
    if isinstance(node, (yaml.SequenceNode, yaml.ScalarNode)):
        if not any_language:
            raise reader.error(node, f"{what} must be a mapping of language -> lines")
        entries = {"*": (node, node)}
    else:
        entries = reader.mapping(node, what)
    for code, (key_node, value_node) in entries.items():
        if code != "*":
            _language(reader, key_node, code, what)
        items = (
            reader.sequence(value_node, f"{what} ({code})")
            if isinstance(value_node, yaml.SequenceNode)
            else [value_node]
        )
        if len(items) > _MAX_LINES:
            raise reader.error(value_node, f"{what} ({code}): more than {_MAX_LINES} lines")
        result[code] = [
            (reader.text(item, f"{what} ({code})"), item.start_mark.line + 1) for item in items
        ]
    return result


def _check_line(reader: _Reader, spec_vars: dict[str, Variable], line: Line, file: str) -> None:
    def fail(problem: str) -> TemplateError:
        return TemplateError(file, line.number, f"line {line.text!r}: {problem}")

    used: list[str] = []
    for slot in line.slots:
        for name in slot.variables:
            if name not in spec_vars:
                known = ", ".join(sorted(spec_vars)) or "none declared"
                raise fail(f"unknown variable {name!r} (variables: {known})")
            used.append(name)
        if slot.count:
            if not isinstance(spec_vars[slot.count], IntVariable):
                raise fail(f"in {slot.fragment}, {slot.count!r} must be an int variable")
            if slot.name and isinstance(spec_vars[slot.name], IntVariable):
                raise fail(f"in {slot.fragment}, {slot.name!r} must be a noun (options or text)")
    duplicates = sorted({n for n in used if used.count(n) > 1})
    if duplicates:
        raise fail(f"variable {duplicates[0]!r} is used twice in one line")


def _template(reader: _Reader, node: yaml.Node, file: str) -> TemplateSpec:
    fields = reader.mapping(node, "a template")
    if "name" not in fields:
        raise reader.error(node, "a template needs a 'name' (the assistant's template name)")
    name = reader.text(fields["name"][1], "name")
    what = f"template {name!r}"
    if not _TEMPLATE_NAME.match(name):
        raise reader.error(
            fields["name"][1], f"{what}: names use letters, digits and '_', '.', ':', '-'"
        )
    _unknown(reader, fields, _TEMPLATE_FIELDS, what)
    variables: dict[str, Variable] = {}
    if "variables" in fields:
        for var_name, (key_node, value_node) in reader.mapping(
            fields["variables"][1], f"{what}: variables"
        ).items():
            if not _IDENTIFIER.match(var_name):
                raise reader.error(key_node, f"{what}: {var_name!r} is not a variable name")
            variables[var_name] = _variable(reader, var_name, value_node)
    if "lines" not in fields:
        raise reader.error(node, f"{what}: no 'lines' (language -> list of lines)")
    lines: dict[str, list[Line]] = {}
    for code, texts in _texts_per_language(
        reader, fields["lines"][1], f"{what}: lines", any_language=False
    ).items():
        parsed = []
        for text, number in texts:
            try:
                parts = parse_line(text)
            except ValueError as exc:
                raise TemplateError(file, number, f"line {text!r}: {exc}") from None
            line = Line(text, parts, number)
            _check_line(reader, variables, line, file)
            parsed.append(line)
        lines[code] = parsed
    if not lines:
        raise reader.error(fields["lines"][1], f"{what}: no lines in any language")
    used = {v for ls in lines.values() for line in ls for v in line.variables}
    unused = sorted(set(variables) - used)
    if unused:
        line = _mapping_key_line(fields, "variables")
        raise TemplateError(file, line, f"{what}: variable {unused[0]!r} is never used")
    tags = {code: {variables_tag(line.variables) for line in ls} for code, ls in lines.items()}
    reference = min(tags, key=lambda c: (c != SOURCE_LANGUAGE, c))
    for code, found in sorted(tags.items()):
        if found != tags[reference]:
            missing = sorted(tags[reference] - found)
            extra = sorted(found - tags[reference])
            detail = []
            if missing:
                detail.append(f"no line with {_tags_text(missing)}")
            if extra:
                detail.append(f"lines with {_tags_text(extra)} that {reference} lacks")
            number = lines[code][0].number
            raise TemplateError(
                file,
                number,
                f"{what}: the variables differ between languages: {code} has "
                + " and ".join(detail)
                + f" (compared with {reference}); every language needs a line for each set",
            )
    context = reader.text(fields["context"][1], "context") if "context" in fields else ""
    must = (
        reader.text(fields["must_express"][1], "must_express") if "must_express" in fields else ""
    )
    replies: dict[str, list[str]] = {}
    if "replies_to" in fields:
        for code, texts in _texts_per_language(
            reader, fields["replies_to"][1], f"{what}: replies_to", any_language=True
        ).items():
            replies[code] = [t for t, _ in texts]
    spec = TemplateSpec(
        name=name,
        file=file,
        line=node.start_mark.line + 1,
        variables=variables,
        lines=lines,
        context=context,
        replies_to=replies,
        must_express=must,
    )
    spec.fingerprint = _fingerprint(spec)
    return spec


def _tags_text(tags: list[str]) -> str:
    return " or ".join(
        "variables " + ", ".join("{" + v + "}" for v in tag.split(",")) if tag else "no variables"
        for tag in tags
    )


def _mapping_key_line(fields: dict[str, tuple[yaml.Node, yaml.Node]], key: str) -> int | None:
    if key in fields:
        return fields[key][0].start_mark.line + 1
    return None


def _fingerprint(spec: TemplateSpec) -> str:
    data = {
        "name": spec.name,
        "variables": {
            n: {
                k: (list(map(repr, v)) if isinstance(v, tuple) else v) for k, v in vars(var).items()
            }
            for n, var in sorted(spec.variables.items())
        },
        "lines": {c: [line.text for line in ls] for c, ls in sorted(spec.lines.items())},
        "context": spec.context,
        "replies_to": spec.replies_to,
        "must_express": spec.must_express,
    }
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_templates(text: str, file: str | Path = "<text>") -> list[TemplateSpec]:
    """The templates in one file's text.

    Raises:
        TemplateError: naming the file, the line and the problem; nothing else escapes.
    """
    file = str(file)
    try:
        root = _compose(text, file)
        reader = _Reader(file)
        if root is None:
            raise TemplateError(file, None, "empty file: expected 'templates:' with a list")
        top = reader.mapping(root, "the file")
        _unknown(reader, top, {"templates"}, "the file")
        if "templates" not in top:
            raise reader.error(root, "expected 'templates:' with a list of templates")
        result: list[TemplateSpec] = []
        names: dict[str, int] = {}
        for node in reader.sequence(top["templates"][1], "templates"):
            spec = _template(reader, node, file)
            if spec.name in names:
                raise TemplateError(
                    file,
                    spec.line,
                    f"duplicate template name {spec.name!r} (first on line {names[spec.name]})",
                )
            names[spec.name] = spec.line
            result.append(spec)
        return result
    except TemplateError:
        raise
    except RecursionError:
        raise TemplateError(file, None, "the file is nested too deeply") from None


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
