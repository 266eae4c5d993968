"""Rendering notifications: one function used alike by sending, preview and resend.

Templates run in Jinja's immutable sandbox with StrictUndefined: a template cannot reach
Python internals, and a missing variable is an error that names the variable. HTML parts may
extend the shared email layout ("layout.html") and import its building blocks
("components.html"); nothing else can be loaded. Rendering is bounded in time (a watchdog
interrupts runaway loops) and in size: output, buffers (macros, {% set %} blocks), `~`, `+`,
`*`, joins and string-making filters are counted as they grow and stop at MAX_OUTPUT_CHARS per
part, so no render holds more than a few megabytes however it is written. A variable is a plain
value unless the template declares `{% accepts name as list|object %}`.
"""
from __future__ import annotations

import ctypes
import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import css_inline
from inscriptis import get_text
from inscriptis.model.config import ParserConfig
from jinja2 import (
    DictLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    meta,
    nodes,
)
from jinja2.compiler import CodeGenerator, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension
from jinja2.filters import do_center, do_format, do_indent, do_join, do_replace, do_wordwrap
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlalchemy import select

from ...extensions import db
from ...models import Customer, Template
from ...notifications import CATALOG, DEFAULTS_DIR, LANGUAGES, default_source
from .. import ServiceError

MAX_TEMPLATE_BYTES = 200 * 1024
MAX_RENDER_SECONDS = 2.0
MAX_OUTPUT_CHARS = 2_000_000
MAX_WIDTH = 10_000  # padding / format widths above this are refused (memory bombs)
PARTS = ("subject", "html", "text")
STRUCTURED = {"list": list, "object": dict}  # what `{% accepts name as … %}` may declare
SOURCE_NAME = "<template>"
_UNDEFINED_RE = re.compile(r"'(?:[^']*? object' has no attribute ')?([A-Za-z_][A-Za-z0-9_]*)'")
_PERCENT_WIDTH_RE = re.compile(r"%[-#0 +]*(\*|\d{5,})")
_BRACE_WIDTH_RE = re.compile(r"\{[^{}]*:[^{}]*(\d{5,}|\{)")


class RenderError(ServiceError):
    """A template that cannot render: carries the field to blame and, when known, a line.
    `code` names the kind of problem for the API when it is not the template's fault."""

    def __init__(self, message: str, field: str | None = None, line: int | None = None,
                 part: str | None = None, code: str | None = None):
        super().__init__(message, field)
        self.line = line
        self.part = part
        self.code = code


class RenderTimeout(BaseException):
    """Raised inside the rendering thread by the watchdog (BaseException: never swallowed)."""


class _TooLarge(SecurityError):
    """A text the render was about to build (or has built) is over MAX_OUTPUT_CHARS."""


@dataclass
class Rendered:
    """A rendered notification, ready to be stored on a message."""

    subject: str
    html: str
    text: str
    template_version_id: int | None
    source: str  # "default" or "override v<N>"


def _too_big(value) -> bool:
    """True for an integer too large to be a sane width or count."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_WIDTH


def _text_size(value, per_item: int = 4, budget: int | None = None, depth: int = 0) -> int:
    """About how many characters `value` takes as text (a list as its items plus `per_item`
    each for quotes and commas), counted only until `budget` is passed. Containers are
    walked, never converted: a list of a thousand references to one big string is small in
    memory but enormous once printed or joined."""
    budget = MAX_OUTPUT_CHARS if budget is None else budget
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return len(str(value)) if abs(value) < 10 ** 18 else 40
    if isinstance(value, dict):
        items = [part for pair in value.items() for part in pair]
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        return 24  # numbers, undefined values, namespaces…: printed short
    if depth > 32:  # nesting no email needs: count it as too large
        return budget + 1
    total = 2
    for item in items:
        total += _text_size(item, per_item, budget - total, depth + 1) + per_item
        if total > budget:
            break
    return total


def _refuse_if_large(size: int, what: str) -> None:
    """Stop the render before building a text over the output cap."""
    if size > MAX_OUTPUT_CHARS:
        raise _TooLarge(f"{what} would be larger than {MAX_OUTPUT_CHARS:,} characters")


def _checked_join(items, separator) -> list:
    """The items of a join, refused when the joined text would be over the cap."""
    items = list(items)  # sandboxed iterables are bounded (range caps at 100,000 items)
    size = _text_size(items, per_item=0) + len(str(separator)) * max(len(items) - 1, 0)
    _refuse_if_large(size, "the joined text")
    return items


class _Buffer(list):
    """The output buffer of a macro, a {% set %} block or a filter block: refuses to grow
    past the output cap (escaping makes each printed piece a new string)."""

    size = 0

    def append(self, piece) -> None:
        """Add one rendered piece, counting its length."""
        self.size += len(piece)
        _refuse_if_large(self.size, "the rendered text")
        super().append(piece)

    def extend(self, pieces) -> None:
        """Add rendered pieces one by one."""
        for piece in pieces:
            self.append(piece)


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with `~` (string concatenation) checked before it joins and
    output buffers that stop growing at the cap."""

    def buffer(self, frame) -> None:
        """Buffer a frame's output in a `_Buffer` instead of a plain list."""
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame) -> None:
        """`a ~ b ~ c`: sizes checked by the environment, then joined as Jinja would."""
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.checked_concat({join}, (")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, plus a wall-clock budget and refusals of outsized strings."""

    _local = threading.local()
    intercepted_binops = frozenset(["*", "**", "%", "+"])
    code_generator_class = _BoundedCodeGenerator

    def concat(self, pieces) -> str:
        """Join rendered pieces (the whole output, a block, a macro's or a {% set %}'s body),
        stopping as soon as they pass the output cap instead of joining them all first."""
        total, kept = 0, []
        for piece in pieces:
            total += len(piece)
            if total > MAX_OUTPUT_CHARS:
                raise _TooLarge(f"the rendered text would be larger than "
                                f"{MAX_OUTPUT_CHARS:,} characters")
            kept.append(piece)
        return "".join(kept)

    output_buffer = _Buffer

    def checked_concat(self, join, values) -> str:
        """`~`: refuse before building a text over the cap (doubling in a loop grows fast)."""
        _refuse_if_large(sum(_text_size(value) for value in values), "the concatenated text")
        return join(values)

    def _check_budget(self) -> None:
        """Refuse to go on once the render's deadline has passed."""
        deadline = getattr(self._local, "deadline", None)
        if deadline is not None and time.monotonic() > deadline:
            raise SecurityError("the template took too long to render")

    def getattr(self, obj, attribute):
        """Attribute access, within the time budget."""
        self._check_budget()
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        """Item access, within the time budget."""
        self._check_budget()
        return super().getitem(obj, argument)

    def call(self, __context, __obj, *args, **kwargs):
        """Calls, within the time budget and refusing outsized numbers and format widths."""
        self._check_budget()
        if any(isinstance(a, int) and abs(a) > MAX_OUTPUT_CHARS
               for a in (*args, *kwargs.values())):
            raise SecurityError("a number in the template is too large")
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str) and name in ("format", "format_map"):
            if _BRACE_WIDTH_RE.search(owner):
                raise SecurityError("format widths in the template are too large")
        if isinstance(owner, str) and name == "join" and args:
            args = (_checked_join(args[0], owner), *args[1:])
        elif isinstance(owner, str) and name == "expandtabs":
            tabsize = args[0] if args else kwargs.get("tabsize", 8)
            if isinstance(tabsize, int):
                _refuse_if_large(len(owner) + owner.count("\t") * tabsize, "the expanded text")
        elif isinstance(owner, str) and name == "replace" and len(args) >= 2:
            old, new = str(args[0]), str(args[1])
            hits = owner.count(old) if old else len(owner) + 1
            _refuse_if_large(len(owner) + hits * max(len(new) - len(old), 0),
                             "the replaced text")
        elif name == "generate_lorem_ipsum" and (args[:1] or [kwargs.get("n", 5)])[0] > 100:
            raise _TooLarge("lipsum gives at most 100 paragraphs")
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, str):
            _refuse_if_large(len(result), "the text returned by a call")
        return result

    def call_binop(self, context, operator, left, right):
        """*, ** and % with their results' size checked before they are built."""
        self._check_budget()
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError("the exponent is too large")
            return left ** right
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (isinstance(seq, str | list | tuple) and isinstance(times, int)
                        and _text_size(seq) * times > MAX_OUTPUT_CHARS):
                    raise SecurityError("the repeated text is too large")
            return left * right
        if operator == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                _refuse_if_large(_text_size(left) + _text_size(right), "the added text")
            return left + right
        if isinstance(left, str) and _PERCENT_WIDTH_RE.search(left):
            raise SecurityError("format widths in the template are too large")
        return left % right


def _checked(filter_, name: str):
    """A string filter refusing outsized widths (its arguments after the text are checked).
    Keeps the filter's Jinja marker, so a filter that takes the environment still gets it."""
    pass_arg = getattr(filter_, "jinja_pass_arg", None)
    skip = 2 if pass_arg is not None else 1  # the environment, then the text

    def wrapper(*args, **kwargs):
        """The filter, after its numeric arguments are checked."""
        if any(_too_big(a) for a in (*args[skip:], *kwargs.values())):
            raise SecurityError(f"a number given to the {name} filter is too large")
        return filter_(*args, **kwargs)

    wrapper.__name__ = filter_.__name__
    if pass_arg is not None:
        wrapper.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return wrapper


def _bounded_filter(filter_):
    """A filter whose input (when a container about to become text) and whose text result
    are kept under the output cap: e.g. `[big] * 9|tojson` or `|string` of a long list."""
    pass_arg = getattr(filter_, "jinja_pass_arg", None)
    skip = 1 if pass_arg is not None else 0  # context / eval_ctx / environment come first

    def wrapper(*args, **kwargs):
        """The filter, between a size check of its input and one of its result."""
        value = args[skip] if len(args) > skip else None
        if isinstance(value, list | tuple | dict | set | frozenset):
            _refuse_if_large(_text_size(value), f"the input of the {name} filter")
        result = filter_(*args, **kwargs)
        if isinstance(result, str):
            _refuse_if_large(len(result), f"the result of the {name} filter")
        return result

    name = getattr(filter_, "__name__", "").removeprefix("do_") or "a"
    wrapper.__name__ = getattr(filter_, "__name__", "filter")
    if pass_arg is not None:
        wrapper.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return wrapper


def _safe_join(eval_ctx, value, d="", attribute=None):
    """The `join` filter, refused before joining when the result would be over the cap."""
    return do_join(eval_ctx, _checked_join(value, d) if attribute is None else value, d,
                   attribute)


_safe_join.jinja_pass_arg = do_join.jinja_pass_arg  # type: ignore[attr-defined]


def _checked_output(value):
    """Every `{{ value }}` before it becomes text: a container printed whole may be huge."""
    if not isinstance(value, str) or len(value) > MAX_OUTPUT_CHARS:
        _refuse_if_large(_text_size(value), "a printed value")
    return value


def _safe_indent(s, width=4, first=False, blank=False):
    """The `indent` filter, refused when indenting every line would pass the output cap."""
    text = str(s)
    pad = len(width) if isinstance(width, str) else width
    if isinstance(pad, int):
        _refuse_if_large(len(text) + max(pad, 0) * (text.count("\n") + 1), "the indented text")
    return do_indent(s, width, first, blank)


def _safe_wordwrap(environment, s, width=79, break_long_words=True, wrapstring=None,
                   break_on_hyphens=True):
    """The `wordwrap` filter, refused when the inserted line breaks would pass the cap."""
    text = str(s)
    if isinstance(width, int) and width > 0:
        lines = text.count(" ") + text.count("\n") + len(text) // width + 1
        _refuse_if_large(len(text) + lines * len(str(wrapstring or "\n")), "the wrapped text")
    return do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)


_safe_wordwrap.jinja_pass_arg = do_wordwrap.jinja_pass_arg  # type: ignore[attr-defined]


def _safe_format(value, *args, **kwargs):
    """The `format` filter, refusing %-format widths that would eat memory."""
    if isinstance(value, str) and _PERCENT_WIDTH_RE.search(value):
        raise SecurityError("format widths in the template are too large")
    return do_format(value, *args, **kwargs)


def _safe_replace(eval_ctx, s, old, new, count=None):
    """The `replace` filter, refusing results over the output cap."""
    text, old_s, new_s = str(s), str(old), str(new)
    hits = text.count(old_s) if old_s else len(text) + 1
    if len(text) + hits * max(len(new_s) - len(old_s), 0) > MAX_OUTPUT_CHARS:
        raise SecurityError("the replaced text would be too large")
    return do_replace(eval_ctx, s, old, new, count)


_safe_replace.jinja_pass_arg = do_replace.jinja_pass_arg  # type: ignore[attr-defined]


class AcceptsExtension(Extension):
    """`{% accepts lines as list, shop as object %}`: this template takes these variables as
    a JSON list or object. Every other variable must be a plain value (text, number,
    true/false): a list, an object or null elsewhere would print as "[…]" or "None" in a
    customer's email, so it is refused before rendering (`check_data`). Renders nothing."""

    tags = {"accepts"}

    def parse(self, parser):
        """Read `name as list|object`, comma-separated, into a statement that does nothing."""
        lineno = next(parser.stream).lineno
        declared: dict[str, str] = {}
        while True:
            name = parser.stream.expect("name")
            parser.stream.expect("name:as")
            kind = parser.stream.expect("name")
            if kind.value not in STRUCTURED:
                parser.fail(f"accepts takes 'list' or 'object', not {kind.value!r}", kind.lineno)
            declared[name.value] = kind.value
            if not parser.stream.skip_if("comma"):
                break
        # a statement that does nothing (an empty Output would leave an empty `if` block in
        # a template that extends the layout); `declared_types` reads the attribute back
        node = nodes.ExprStmt(nodes.Const(None), lineno=lineno)
        node.postino_accepts = declared
        return node


def _shared_templates() -> dict[str, str]:
    """The shared layout and components (the only templates an HTML part may load)."""
    shared = DEFAULTS_DIR / "_shared"
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(shared.glob("*.html"))}


def _environment(autoescape: bool) -> _BoundedEnvironment:
    """A bounded sandbox; the HTML one (autoescaped) can load the shared layout."""
    env = _BoundedEnvironment(
        autoescape=autoescape, undefined=StrictUndefined,
        loader=DictLoader(_shared_templates()) if autoescape else None,
        extensions=[AcceptsExtension], finalize=_checked_output,
    )
    env.filters.update(center=_checked(do_center, "center"),
                       indent=_checked(_safe_indent, "indent"),
                       wordwrap=_checked(_safe_wordwrap, "wordwrap"), format=_safe_format,
                       replace=_safe_replace, join=_safe_join)
    for name, filter_ in list(env.filters.items()):
        env.filters[name] = _bounded_filter(filter_)
    return env


_html_env = _environment(True)
_text_env = _environment(False)
_inliner = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)
_text_config = ParserConfig(display_links=True)


def _env(kind: str) -> _BoundedEnvironment:
    """The environment of a part kind: html or text (subject and text)."""
    return _html_env if kind == "html" else _text_env


@lru_cache(maxsize=512)
def _compile(kind: str, source: str):
    """Compile once per distinct source (previews re-render the same text often)."""
    return _env(kind).from_string(source)


@lru_cache(maxsize=512)
def _accepted(kind: str, text: str) -> tuple[tuple[str, str, int], ...]:
    """The `{% accepts %}` declarations of one part: (name, list|object, line)."""
    found = []
    for node in _env(kind).parse(text).find_all(nodes.ExprStmt):
        for name, declared in getattr(node, "postino_accepts", {}).items():
            found.append((name, declared, node.lineno))
    return tuple(found)


def declared_types(source: dict) -> dict[str, str]:
    """Variables the template takes as a list or an object, from every part's `{% accepts %}`.

    Raises RenderError when the parts disagree about one variable; a part that does not parse
    declares nothing (its syntax error is reported by whoever renders or checks it)."""
    result: dict[str, tuple[str, str]] = {}
    for part in PARTS:
        text = source.get(part) or ""
        if "accepts" not in text:
            continue
        try:
            found = _accepted("html" if part == "html" else "text", text)
        except TemplateSyntaxError:
            continue
        for name, declared, line in found:
            if name in result and result[name][0] != declared:
                raise RenderError(f"{name!r} is accepted as a {result[name][0]} in the "
                                  f"{result[name][1]} but as a {declared} in the {part}",
                                  f"data.{name}", line=line, part=part)
            result[name] = (declared, part)
    return {name: declared for name, (declared, _part) in result.items()}


def _kind_of(value) -> str:
    """How a JSON value is called in an error message."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def check_data(data: dict, declared: dict[str, str]) -> None:
    """Refuse a variable whose value the template would print wrongly: null anywhere, a list
    or an object unless the template accepts it as such (and then nothing else)."""
    for name, value in data.items():
        wanted = declared.get(name)
        field = f"data.{name}"
        if wanted is not None:
            if not isinstance(value, STRUCTURED[wanted]):
                raise RenderError(f"{field} must be a {wanted} (the template accepts it as one),"
                                  f" not {_kind_of(value)}", field, code="invalid_variable")
        elif value is None:
            raise RenderError(f"{field} is null: send a value, or leave an optional variable "
                              "out", field, code="invalid_variable")
        elif not isinstance(value, str | int | float | bool):
            raise RenderError(f"{field} is {_kind_of(value)}, but the template prints it as "
                              f"text: send text or a number (a template may declare "
                              f"{{% accepts {name} as list %}} or as object)", field,
                              code="invalid_variable")


def _template_line(exc: BaseException) -> int | None:
    """The line of the admin's own template where an error happened (not the layout's)."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == SOURCE_NAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class _Watchdog:
    """Interrupts the current thread with RenderTimeout when rendering runs out of time."""

    def __init__(self, seconds: float):
        """Arm (not start) a watchdog for the current thread."""
        self.thread_id = threading.get_ident()
        self.lock = threading.Lock()
        self.done = False
        self.fired = False
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True

    def _fire(self) -> None:
        """Timer thread: interrupt the rendering thread unless it already finished."""
        with self.lock:
            if not self.done:
                self.fired = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self.thread_id), ctypes.py_object(RenderTimeout))

    def __enter__(self):
        """Start the timer."""
        self.timer.start()
        return self

    def __exit__(self, *exc_info):
        """Stop the timer and drop an interrupt that was not delivered yet."""
        with self.lock:
            self.done = True
        self.timer.cancel()
        if self.fired:  # an interrupt not yet delivered must not hit the caller later
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id), None)
        return False


def _check_size(source: str, part: str) -> None:
    """Refuse a part over the template size cap."""
    if len(source.encode("utf-8")) > MAX_TEMPLATE_BYTES:
        raise RenderError(f"the {part} is larger than {MAX_TEMPLATE_BYTES // 1024} KB",
                          part=part)


def _syntax_error(exc: TemplateSyntaxError, part: str) -> RenderError:
    """A Jinja syntax error as a RenderError with its line."""
    return RenderError(f"syntax error in the {part}, line {exc.lineno}: {exc.message}",
                       line=exc.lineno, part=part)


def _render_part(kind: str, source: str, data: dict, part: str) -> str:
    """Render one part with the sandbox, the time budget and errors that name the culprit."""
    _check_size(source, part)
    try:
        template = _compile(kind, source)
    except TemplateSyntaxError as exc:
        raise _syntax_error(exc, part) from None
    env = _env(kind)
    env._local.deadline = time.monotonic() + MAX_RENDER_SECONDS
    try:
        with _Watchdog(MAX_RENDER_SECONDS + 0.5):
            out = template.render(data)
    except RenderTimeout:
        raise RenderError(f"the {part} took too long to render (over "
                          f"{MAX_RENDER_SECONDS:g} s)", part=part) from None
    except UndefinedError as exc:
        match = _UNDEFINED_RE.search(exc.message or "")
        name = match.group(1) if match else None
        field = f"data.{name}" if name else "data"
        raise RenderError(f"missing template variable: {name or exc.message}", field,
                          line=_template_line(exc), part=part) from None
    except _TooLarge as exc:
        raise RenderError(f"the {part} is too large to render: {exc}",
                          line=_template_line(exc), part=part) from None
    except SecurityError as exc:
        raise RenderError(f"the {part} tried something not allowed: {exc}",
                          line=_template_line(exc), part=part) from None
    except TemplateNotFound as exc:
        raise RenderError(f"the {part} loads an unknown template {exc.name!r} (only "
                          f"layout.html and components.html exist)",
                          line=_template_line(exc), part=part) from None
    except TemplateSyntaxError as exc:  # in a loaded template: cannot happen with ours
        raise _syntax_error(exc, part) from None
    except RecursionError:
        raise RenderError(f"the {part} recurses too deeply", part=part) from None
    except MemoryError:
        raise RenderError(f"the {part} needs too much memory", part=part) from None
    except Exception as exc:  # arithmetic, type errors, … inside the template
        raise RenderError(f"the {part} failed to render: {exc}", line=_template_line(exc),
                          part=part) from None
    finally:
        env._local.deadline = None
    if len(out) > MAX_OUTPUT_CHARS:
        raise RenderError(f"the rendered {part} is too large", part=part)
    return out


def _declared_names(ast: nodes.Template) -> set[str]:
    """Names a template sets, imports or defines itself (blocks see them through the context)."""
    names = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    names |= {n.name for n in ast.find_all(nodes.Macro)}
    names |= {n.target for n in ast.find_all(nodes.Import)}
    for node in ast.find_all(nodes.FromImport):
        names |= {item[1] if isinstance(item, tuple) else item for item in node.names}
    return names


def check_source(source: dict, known: set[str] | frozenset[str]) -> list[RenderError]:
    """Problems found without rendering: size, syntax, variables not in `known` (with lines)."""
    errors: list[RenderError] = []
    try:
        accepted = set(declared_types(source))
    except RenderError as exc:
        errors.append(exc)
        accepted = set()
    for part in PARTS:
        text = source.get(part) or ""
        if not text and part != "text":
            errors.append(RenderError(f"the {part} is empty", part=part))
            continue
        try:
            _check_size(text, part)
            ast = _env("html" if part == "html" else "text").parse(text)
        except RenderError as exc:
            errors.append(exc)
            continue
        except TemplateSyntaxError as exc:
            errors.append(_syntax_error(exc, part))
            continue
        allowed = set(known) | accepted | ({"subject"} if part != "subject" else set())
        unknown = meta.find_undeclared_variables(ast) - allowed - _declared_names(ast)
        for name in sorted(unknown):
            line = min((n.lineno for n in ast.find_all(nodes.Name) if n.name == name),
                       default=None)
            errors.append(RenderError(f"unknown variable {name!r}", f"data.{name}",
                                      line=line, part=part))
    return errors


_SELF_LINK_RE = re.compile(r"\[(\S+?)\]\(\1\)")
_BLANK_LINES_RE = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """The plain-text part derived from HTML, links kept as "label (url)" or a bare url."""
    text = get_text(html, _text_config)
    text = "\n".join(line.rstrip() for line in text.splitlines())
    text = _SELF_LINK_RE.sub(r"\1", text)
    text = re.sub(r"\[([^\]\n]+)\]\((\S+?)\)", r"\1: \2", text)
    return _BLANK_LINES_RE.sub("\n\n", text).strip() + "\n"


def inline_css(html: str) -> str:
    """Inline <style> rules into style attributes (no remote stylesheets are ever loaded)."""
    try:
        return _inliner.inline(html)
    except ValueError:
        return html


def render_source(source: dict, data: dict) -> tuple[str, str, str]:
    """Render a template source {subject, html, text?} with data: (subject, html, text)."""
    check_data(data, declared_types(source))
    subject = _render_part("text", source["subject"], data, "subject").strip()
    if any(ch in subject for ch in "\r\n\x00"):
        raise RenderError("the subject must be a single line", "data", part="subject")
    html = _render_part("html", source["html"], {**data, "subject": subject}, "html")
    html = inline_css(html)
    text_source = source.get("text")
    if text_source and text_source.strip():
        text = _render_part("text", text_source, {**data, "subject": subject}, "text")
    else:
        text = html_to_text(html)
    return subject, html, text


def override_for(customer: Customer | None, event: str, language: str) -> Template | None:
    """The customer's active override of this event and language, if any."""
    if customer is None or customer.id is None:
        return None
    return db.session.scalar(
        select(Template).where(
            Template.customer_id == customer.id,
            Template.event == event,
            Template.language == language,
            Template.active.is_(True),
        )
    )


def pick_language(customer: Customer | None, requested: str | None) -> str:
    """The notification's language, else the customer's default, else Italian."""
    if requested in LANGUAGES:
        return requested
    if customer is not None and customer.default_language in LANGUAGES:
        return customer.default_language
    return "it"


def render_notification(customer: Customer | None, event: str, language: str,
                        data: dict) -> Rendered:
    """Render an event for a customer: its override when one exists, else the default."""
    if event not in CATALOG:
        raise RenderError(f"unknown event {event}", "event")
    template = override_for(customer, event, language)
    if template is not None and template.current_version is not None:
        version = template.current_version
        source = {"subject": version.subject, "html": version.html, "text": version.text}
        subject, html, text = render_source(source, data)
        return Rendered(subject, html, text, version.id, f"override v{version.number}")
    subject, html, text = render_source(default_source(event, language), data)
    return Rendered(subject, html, text, None, "default")
