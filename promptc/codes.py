"""Diagnostic codes: each code as a named constant with its one-line meaning, and the long explanation
that `promptc explain CODE` prints (as mypy's errorcodes.py and `rustc --explain` do).

Code ranges: E1xx syntax and files, E2xx names, E3xx types and schema, E4xx tests, E5xx training data,
W for warnings. A code has one meaning; a new kind of mistake gets a new code here, a row in the table
of docs/language.md §8 (`meaning` and `example` exactly as below; tests/core/test_codes.py checks it),
and a golden case in tests/cases/errors/.

Stages report with the constant, never a bare string: `diags.error(codes.UNKNOWN_TYPE, ...)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class CodeInfo:
    code: str
    meaning: str  # one line: the `meaning` column of docs/language.md §8
    example: str  # the `example` column of docs/language.md §8 (Markdown)
    explanation: str  # what `promptc explain CODE` prints after the meaning

    @property
    def is_warning(self) -> bool:
        return self.code.startswith("W")


CODES: dict[str, CodeInfo] = {}


def _code(code: str, meaning: str, example: str, explanation: str) -> str:
    assert code not in CODES, f"{code} is defined twice"
    CODES[code] = CodeInfo(code, meaning, example, explanation.strip("\n"))
    return code


# ------------------------------------------------------------------ E1xx: syntax and files
NOT_UTF8: Final = _code("E101", "file is not valid UTF-8", "a Latin-1 `é` in a program or examples file", """
A .prompt program and an examples file must be UTF-8 text. The diagnostic points at the line and
column of the first byte that is not UTF-8 and names the byte.

Fix: save the file as UTF-8 (most editors have "Save with encoding"). A leading byte-order mark is
allowed and ignored.
""")
SYNTAX: Final = _code("E102", "syntax error (what was expected, in words)",
                      "`task t(x: str) str {` — expected `'->'`", """
The parser met a token where it expected something else; the message lists, in words, what could
have come next, and a hint names the usual fix where there is one.

    task t(x: str) str {        # expected '->': write  task t(x: str) -> str {
    expect output.tag = bug     # '=' where a comparison fits: write  ==
    items: LineItem[]           # not a list type: write  items: list[LineItem]

A syntax error stops the check of that file, except `T[]`, which is reported at the declaration and
then read as `list[T]` so that the rest of the program is still checked.
""")
UNEXPECTED_CHAR: Final = _code("E103", "unexpected character", "`type T { a: str; b: str }`", """
A character that cannot start any token here, such as `;`, `@` or a non-breaking space. promptc has
no `;`: fields, items and options are separated by newlines or commas.
""")
UNTERMINATED_STRING: Final = _code("E104", "unterminated string", '`prompt "{{ x }}` with no closing quote', """
A string has no closing quote. A "..." string ends on the line it starts on; text over several
lines is written as a triple-quoted string:

    prompt \"\"\"
    Summarise {{ doc }}.
    \"\"\"
""")
TEMPLATE_SYNTAX: Final = _code("E105", "template syntax error", "`{{ x }`", """
A `system` or `prompt` text is a jinja2 template, and this one does not parse: an unclosed `{{`,
`{%` or block, or a misspelt tag. The diagnostic points at the template line jinja2 reported.
""")
BAD_REGEX: Final = _code("E106", "invalid regular expression or flag", "`/sk-[A-Z/`, `/a/q`", """
A /regex/ (in a constraint, a field `pattern`, or `regex(...)`) is not a valid Python regular
expression, or it has a flag other than i, m, s and x. The diagnostic points at the position Python's
`re` module reported.
""")
BAD_EXAMPLES_LINE: Final = _code("E107", "malformed examples file line", '`{"input": {...} "output": 1}`', """
Each non-blank line of an `examples "FILE.jsonl"` file must be one JSON object with "input" (an
object with one key per task parameter) and "output", and optionally "name" and "provenance":

    {"input": {"ticket": {"subject": "Hi", "body": "..."}}, "output": {"tag": "bug", "reply": "..."}}

The diagnostic points at the line and column of the JSON mistake or at the unknown key.
""")
FILE_NOT_FOUND: Final = _code("E108", "file not found", '`examples "data/nope.jsonl"`', """
A file named by the program (or on the command line) does not exist or cannot be read. An examples
path is resolved relative to the program file, not to the current directory; the hint shows the
path that was tried.
""")
BAD_ESCAPE: Final = _code("E109", "invalid string escape", '`"\\q"`', r"""
A backslash in a "..." string starts an escape, and this one is not known. Valid escapes are
\n \t \r \" \\ \/ \0 and \uXXXX. Write \\ for a backslash, or use a /regex/ literal for patterns.
""")

DATA_FILE_REFUSED: Final = _code("E110", "data file refused (outside the program's folder, not a regular file, or too large)",
                                 '`examples "/proc/self/environ"`', """
A program may come from someone else, so the data files it names are read with care:

- the path must resolve inside the program's folder (symlinks included), or inside a folder the
  user names with `--data-root DIR` (or PROMPTC_DATA_ROOT): an absolute path or `../..` elsewhere
  is refused;
- only regular files are read, never a FIFO, a device or a directory;
- a file over the size limit (64 MiB) is refused before it is read; raise the limit with
  `--max-data-bytes N` (or PROMPTC_MAX_DATA_BYTES).

docs/security.md explains the threat model.
""")
NESTED_TOO_DEEPLY: Final = _code("E111", "nested too deeply", "250 nested `list[`, a 500-term `or`", """
Types, values and expressions nest at most 100 levels (in the parse tree), so that every stage
stays fast and never runs out of stack. A long chain of `or` counts one level per term: test
membership instead (`output.tag in [a, b, c]`) or split it into several constraints.
""")
NUMBER_OUT_OF_RANGE: Final = _code("E112", "number out of range", "`99999999999999999999`, `1e999`", """
Integers are 64-bit (-9223372036854775808 to 9223372036854775807) and floats are finite 64-bit
numbers, in programs as in examples files; `1e999` would be infinity, which JSON cannot carry.
""")

# ------------------------------------------------------------------ E2xx: names
UNDECLARED_VARIABLE: Final = _code("E201", "undeclared template variable", "`{{ tikcet.subject }}`", """
A template uses a name that is not a task input, a `{% for %}` or `{% set %}` variable, or one of
jinja2's globals (`loop`, `range`, ...). The hint names the closest input.

    task triage(ticket: Ticket) -> Triage {
      prompt "Subject: {{ tikcet.subject }}"     # did you mean 'ticket'?
""")
UNKNOWN_TYPE: Final = _code("E202", "unknown type", "`body: Strng`", """
A type name that is neither built in (str, int, float, bool, list[T]) nor declared with `type` or
`enum` in this file. The hint names the closest type. Lists are written `list[T]`, optional values
`T?`.
""")
UNKNOWN_TASK: Final = _code("E203", "unknown task", "`test summarise { ... }`", """
A `test` block or a `target` names a task that is not declared in this file. The hint names the
closest task.
""")
UNKNOWN_FIELD: Final = _code("E204", "unknown field", "`{{ ticket.subjet }}`, `output.nope`", """
A field that the record does not declare: in a template path, an expression path, or a record
literal (an example's input or output, a test input). The hint names the closest field, or lists the
record's fields. Methods of values are not fields: in templates, use filters (`{{ x | upper }}`).
""")
UNKNOWN_FUNCTION: Final = _code("E205", "unknown function, filter or test", "`lenght(output)`, `{{ x \\| shout }}`", """
An expression calls a function that promptc does not have (see docs/language.md §5 for the list),
or a template uses a jinja2 filter or test that the sandboxed environment does not provide.
""")
DUPLICATE_NAME: Final = _code("E206", "duplicate name", "two tasks named `t`", """
Two declarations of the same kind share a name: types, enum members, record fields, tasks,
parameters, constraints, tests, targets, options, `given` paths or field constraints. A note points
at the first one. Built-in type names cannot be redeclared, and `output` cannot name a parameter.
""")
UNKNOWN_MEMBER: Final = _code("E207", "unknown enum member", "`output biling`", """
A value or an expression names something that is not a member of the enum it is compared with or
assigned to. Members are written bare (`billing`); a string that names a member ("billing") is
accepted too. The hint names the closest member.
""")
UNKNOWN_OPTION: Final = _code("E208", "unknown target option", "`shot = 2`", """
A `target text` or `target tune` block sets an option that its kind does not have. The hint names
the closest option; docs/language.md §7 lists them all.
""")
UNKNOWN_METHOD: Final = _code("E209", "unknown tune method", '`method = "prompt_tunning"`', """
`method` of a tune target must be one of prompt_tuning, prefix_tuning, p_tuning, lora or ia3.
""")
UNSAFE_TEMPLATE_ACCESS: Final = _code("E210", "unsafe template access", "`{{ text.__class__ }}`", """
Templates may only read declared input fields. Any attribute or key starting with `_` (such as
`__class__` or `__subclasses__`) is refused when the program is checked, before the sandbox would
refuse it at render time.
""")
UNKNOWN_NAME: Final = _code("E211", "unknown name in an expression", "`len(tickt.body)`", """
An expression starts with a name that is neither a task input, `output`, nor a member of a declared
enum. The hint names the closest one. `null`, `true` and `false` are written in lower case.
""")
UNKNOWN_GENERATOR: Final = _code("E212", "unknown generator", "`given x = txt()`", """
`given PATH = GENERATOR(...)` in a property names a generator promptc does not have. The generators
are text, regex, one_of, ints, floats and bools (docs/language.md §6).
""")
BAD_GIVEN_PATH: Final = _code("E213", "`given` path does not exist", "`given ticket.subjct = ...`", """
The path of a `given` must name an input of the task, then fields of records and [n] indexes of lists.
The hint names the closest input or field.
""")
DUPLICATE_KEY: Final = _code("E214", "duplicate key in a record literal", "`{ a: 1, a: 2 }`", """
A record literal gives the same key twice; a note points at the first one. Remove one of them.
""")
UNKNOWN_FIELD_CONSTRAINT: Final = _code("E215", "unknown field constraint", "`[maxlen=3]`", """
The keys of a field constraint list are min_len and max_len (str and list), pattern (str), and ge and
le (int and float). The hint suggests the key that fits the type: `int [min=1]` is `int [ge=1]`,
`str [max=80]` is `str [max_len=80]`.
""")
UNKNOWN_TARGET_KIND: Final = _code("E216", "unknown target kind", "`target prose t for x {}`", """
A target is `target text NAME for TASK { ... }` or `target tune NAME for TASK { ... }`.
""")
UNKNOWN_SETTING: Final = _code("E217", "unknown property setting", "`max_example = 5`", """
The only property setting is `max_examples = N`.
""")

TEMPLATE_OUTSIDE_SUBSET: Final = _code("E218", "template feature outside the accepted subset of jinja2",
                                       "`{% include 'x' %}`, `{{ x.upper() }}`", """
Compiled prompts are rendered by whoever uses them, often with a plain (non-sandboxed) jinja2
Environment, so templates may only use a small subset of jinja2 that is safe there: output, `if`,
`for`, `set`, `filter` and `raw` blocks, paths on inputs (`ticket.subject`, `items[0]`), constants,
operators, tests and the filters listed in docs/language.md. Refused: include, import, extends,
block, macro, call and with blocks, method and function calls other than `range(n)`,
`loop.cycle(...)` and `loop.changed(...)`, the `random` filter, namespaces, and arguments from
the inputs where a filter takes a size or a name.
""")
TEMPLATE_UNBOUNDED: Final = _code("E219", "template could render unbounded output", "`{{ 'x' * 99999999 }}`", """
A template that could make rendering take unbounded time or memory is refused when the program is
checked: `range(n)` over 1,000 items, nested loops over 10,000 iterations in all, more than two
nested loops over inputs, `*` by a value from the inputs or by more than 100, `**`, widths over
1,000, chains of filters that multiply the size of their input (replace, join, indent) beyond a
fixed budget, and nesting deeper than 40 levels.
""")

# ------------------------------------------------------------------ E3xx: types and schema
TYPE_MISMATCH: Final = _code("E301", "type mismatch in an expression", "`len(output.score)` on an int", """
An expression combines values of types that do not fit: a function applied to the wrong type, a
comparison of a string with a number, an ordering of non-numbers, a condition that is not a bool.
Enum values compare with members of their own enum, written bare or as a string that names one.
""")
SCHEMA_MISMATCH: Final = _code("E302", "value does not match the schema", "a missing field, `\"high\"` for an int", """
A value (an example's input or output, a test input, a `one_of` argument, an examples-file line)
does not have the declared type: a string for an int, a missing required field, null for a type
that is not optional (write `T?` to allow it). `null`, `true` and `false` are lower case.
""")
FIELD_CONSTRAINT_VIOLATED: Final = _code("E303", "value violates a field constraint",
                                         "a 20-character reply with `max_len=5`", """
A value has the right type but breaks a field constraint of it: a length outside min_len..max_len, a
number outside ge..le, or a string that does not fully match the pattern.
""")
EXAMPLE_VIOLATES_CONSTRAINT: Final = _code("E304", "example violates a task constraint",
                                           "a refund ticket labelled `bug`", """
An example (inline or from an examples file) breaks one of the task's constraints. Examples teach
the model, so a wrong example is an error; the notes show the constraint and the values it saw.
Fix the example, or the constraint if the example is right.
""")
CONTRADICTORY_BOUNDS: Final = _code("E305", "contradictory bounds", "`[min_len=50, max_len=10]`", """
A lower bound is above the upper bound (min_len > max_len, ge > le, or a generator's low > high),
so no value could satisfy both.
""")
CONSTRAINT_NOT_APPLICABLE: Final = _code("E306", "field constraint does not apply to the type",
                                         "`int [max_len=3]`", """
The field constraint exists but not for this type: min_len and max_len apply to str and list,
pattern to str, ge and le to int and float.
""")
BAD_OPTION_VALUE: Final = _code("E307", "invalid option or constraint value", '`format = "markdown"`, `shots = -1`', """
A target option or a field constraint has a value of the wrong kind or out of range: a string where
a number is expected, a value not among the option's choices, a negative length, a variant the task
does not declare. The hint gives the option's help text or the closest choice.
""")
RECURSIVE_TYPE: Final = _code("E308", "recursive type", "`type Node { child: Node? }`", """
A record contains itself, directly or through other records. Output schemas must be finite: flatten
the structure, or refer to items by id.
""")
NO_PROMPT: Final = _code("E309", "task has no prompt", "a task with only `system`", """
Every task needs a `prompt` template; `system`, examples, constraints and tests are optional.
""")
WRONG_ARG_COUNT: Final = _code("E310", "wrong number of arguments", "`len(a, b)`", """
A function in an expression was called with the wrong number of arguments, or with a keyword
argument (functions in expressions take positional arguments only).
""")
OPTION_NOT_FOR_METHOD: Final = _code("E311", "option does not apply to the method",
                                     '`virtual_tokens` with `method = "lora"`', """
A tune option that only one method uses was set for another method; the hint names the methods it
applies to.
""")
DUPLICATE_TASK_ITEM: Final = _code("E312", "duplicate task item", "two unnamed `prompt`s", """
A task has more than one unnamed `prompt` (or `system`). Give alternatives a name, and pick one
from a text target with prompt_variant / system_variant:

    prompt variant "terse" "Answer in one line: {{ q }}"
""")
FIELD_OF_NULLABLE: Final = _code("E314", "a template reads a field of a value that may be null",
                                 "`{{ ticket.subject }}` with `ticket: Ticket?`", """
A template reads a field (or an item) through an optional value (`T?`) without a guard. When the
value is null the field does not exist, and rendering fails for an input the schema accepts. Guard
the read, or give a fallback:

    {% if ticket %}Subject: {{ ticket.subject }}{% endif %}
    Subject: {{ ticket.subject if ticket else "(none)" }}
    Subject: {{ ticket.subject | default("") }}
""")
TEMPLATE_TYPE: Final = _code("E315", "a template expression may fail for a valid input (a type error at render time)",
                             "`{{ x - 1 }}` with `x: str`", """
The checker gives every template expression a type from the task's declared inputs, and refuses an
operator, test or filter whose operands may be of a type it fails on for some input the schema
accepts: rendering would raise, in promptc and in the compiled prompt.jinja under plain jinja2.

    {{ x - 1 }}                  x: str      '-' needs numbers on both sides
    {{ n | join(", ") }}         n: int      join needs a list, string or record
    {{ x | round }}              x: str      round needs a number
    {{ x | int + "a" }}                      '+' needs two numbers, two strings or two lists
    {{ a < b }}                  a: str, b: int   Python cannot order a string and a number
    {{ n + 1 }}                  n: int?     the value may be null: guard it first
    {{ items[0] }}               items: list[str]   the list may be empty: guard it with {% if items %}
    {{ xs | map("upper") | length }}         a generator has no length: add | list first

What is typed: constants, inputs (str, int, float, bool, enums, T?, list[T], records), `~` (always
safe), arithmetic (numbers only; `+` also joins two strings or two lists; `/ // %` by a non-zero
constant), comparisons (`<` only between numbers or between strings), `in`, `and or not`, `if/else`
(a missing else is undefined), tests and the accepted filters with their argument types. A guard
narrows a type: inside `{% if x %}` x is not null and, for a list, not empty; `x is not none` and
`x | default(...)` do the same for null and undefined values.

Numbers carry a bound on their size: an int past the float range cannot be converted to a float,
a float past it may be inf (`| int` fails on inf), and an int of more than 4,300 digits cannot be
printed. Declare ge/le bounds on an input to keep arithmetic on it in range.

Fix: convert or guard the value, or declare the input with the type the template needs. `~`
converts both sides to text: {{ "n=" ~ n }}.
""")
ENCODER_CANNOT_SERVE: Final = _code("E316", "an encoder base cannot serve this output",
                                    '`reply: str` with 12 different replies, `base = "minilm"`', """
An encoder base (minilm, BERT, RoBERTa, ...) reads the input and predicts each output field with a head
of its own, so it serves finite values only: an enum, a bool, an optional of those, an int with both
`ge` and `le` (at most 20 values), a `list[Enum]` with `max_len` (multi-label), or a `str` whose training
values come from a closed set of at most 30 replies, each seen at least twice (suggested reply
templates). The message names the field that is none of these. Fix: bound the field (`ge`/`le`,
`max_len`), reuse a small set of reply templates in the examples, or tune on a causal LM base (a hub id
or a local directory) that generates the field.
""")
FAMILY_NOT_FOR_BASE: Final = _code("E317", "the tune target's family does not fit its base",
                                   '`family = "classifier"` with `base = "tiny-causal"`', """
`family = "classifier"` trains heads on an encoder, so it needs an encoder base (minilm, BERT, ...);
`family = "causal"` generates text, which an encoder cannot. `promptc check` says so when it knows the
base without loading it (the built-in bases, or a local directory's config.json); for a hub id
`promptc tune` says so once the config is loaded. Leave `family` unset ("auto") to have it follow the
base.
""")
EMPTY_ENUM: Final = _code("E313", "enum has no members", "`enum Tag { }`", """
An enum must have at least one member; a field of an empty enum could hold no value.
""")

# ------------------------------------------------------------------ E4xx: tests
BAD_SETTING: Final = _code("E402", "invalid property setting", "`max_examples = 0`", """
`max_examples` takes a positive integer: how many inputs hypothesis draws for the property.
""")
BAD_GENERATOR_ARG: Final = _code("E403", "invalid generator argument", "`text()` for an `int` field", """
A generator was called with the wrong arguments, or cannot produce values of the field's type; the
hint lists the generators that fit.
""")
BAD_PERTURBATION: Final = _code("E404", "invalid perturbation", "`perturb ticket.body = typos(rate=2)`", """
A robustness property's `perturb PATH = KIND(args)` names an unknown perturbation, passes it an
argument it does not take or a value out of range, or points it at an input it cannot change: text
perturbations (typos, case, whitespace, punctuation, distractor, injection, paraphrase) change a `str`,
`reorder()` a record (or `input`, the task's inputs as a whole). docs/language.md lists them.
""")
TEST_ONLY_FUNCTION: Final = _code("E405", "judge() or similar() outside a test", '`constraint c: judge("polite")`', """
judge() asks a judge model and similar() embeds text with MiniLM: both run only while a test suite
runs, so they belong in `expect` and `check`. A constraint is also a sentence in the prompt and a
filter on training data, where no judge model runs.
""")

# ------------------------------------------------------------------ E5xx: training data
SECRET_IN_DATA: Final = _code(
    "E501",
    "training data holds a secret (an API key, a private key, a token, a password); `promptc tune` stops "
    "unless `--allow-secrets`, which trains with it redacted",
    '`note: "sk-abc...xyz"` in an examples line', """
A training example contains something that looks like a credential. A tuned adapter can memorise
its training data, so `promptc tune` stops. Remove the secret from the example, or pass
--allow-secrets to train with it redacted.
""")

# ------------------------------------------------------------------ warnings
UNUSED_INPUT: Final = _code("W201", "input never used in the prompt", "`task t(x: str, y: str)` using only `x`", """
A task input appears in neither the prompt nor the system text, so the model never sees it.
Reference it as {{ name }}, or remove the parameter.
""")
UNENFORCEABLE_PATTERN: Final = _code(
    "W301",
    "an output pattern uses a regex feature constrained decoding cannot enforce (look-around, "
    "back-references, ...); it is still validated after generation",
    "`reply: str [pattern=/(?!x).*/]`", """
Constrained decoding compiles output patterns to a grammar, which cannot express look-around or
back-references. Such a pattern is dropped while decoding and checked after generation instead.
Rewrite the pattern without the feature to have it enforced while decoding.
""")
UNSEEN_LABEL: Final = _code("W302", "a label the encoder heads can predict never appears in the training data",
                            "`enum Tag { billing, bug, legal }` with no `legal` example", """
An encoder's head has one output per value of its field, and learns each from the examples that carry
it. A value no example carries is never learned, so the tuned model will not predict it. Add examples
with it, or leave it out of the type.
""")
TEST_DUPLICATES_EXAMPLE: Final = _code("W401", "test input duplicates an example",
                                       "a case whose input is also an example", """
A test case uses the same input as an example. Examples are shots and training data, so such a test
measures memory rather than skill. Change the case, or drop the example.
""")
PATTERN_FLAGS_IGNORED: Final = _code("W402", "regex flags on a field pattern are ignored", "`[pattern=/a/i]`", """
A field pattern must match the whole value and is used in JSON Schema, which has no flags. Write
flags inline instead: `[pattern=/(?i)yes|no/]`.
""")


def explain(code: str) -> str:
    """The long explanation of a code, as `promptc explain CODE` prints it. KeyError if unknown."""
    info = CODES[code.upper()]
    kind = "warning" if info.is_warning else "error"
    example = info.example.replace("\\|", "|")  # the table's Markdown escape
    return f"{info.code} ({kind}): {info.meaning}\n\n{info.explanation}\n\nExample: {example}\n"
