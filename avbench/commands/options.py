"""Command-line options generated from the config dataclasses, so that every option is written once.

A command is a plain typer function. A parameter whose default is `Config("module:Class")` stands for
the fields of that dataclass: `build_command` replaces it by one option per field (help from the field's
`metadata["help"]`, default read from the field, booleans as `--x/--no-x`, fields without a default
required) and calls the function with the config object built from them. `Overrides(...)` does the same
for a few dotted keys of a nested config whose real values come from a file (`train --precision`).

Commands are built only when they run (`LazyGroup`): `avbench --help` lists them from their docstrings
and imports none of the config modules, so neither torch nor what those modules import. `build_command`
is also the one place where an `AvbenchError` becomes one red `error: ...` line and its exit code;
any other exception keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from types import NoneType, UnionType
from typing import Any

import typer
import typer.core
import typer.main

from avbench.errors import AvbenchError

_OPTION_KEYS = ("min", "max")  # field metadata passed through to typer.Option as is


def _import(target: str) -> type:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, UnionType):
        args = [a for a in typing.get_args(hint) if a is not NoneType]
        if len(args) == 1:
            return args[0], True
    return hint, False


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return ...


def _flag(decls: tuple[str, ...]) -> tuple[str, ...]:
    """`--fvd` → `--fvd/--no-fvd`, so a default of True can be turned off and the help shows both."""
    if "/" in decls[0]:
        return decls
    return (f"{decls[0]}/--no-{decls[0].removeprefix('--')}", *decls[1:])


def _own_fields_first(cls: type) -> list[dataclasses.Field]:
    """The fields of a config dataclass, those it inherits (e.g. the MMAudio options two sample commands
    share) after its own, so a command's help opens with what is particular to it."""
    inherited = {f.name for base in cls.__mro__[1:] if dataclasses.is_dataclass(base) for f in dataclasses.fields(base)}
    fields = dataclasses.fields(cls)
    return [f for f in fields if f.name not in inherited] + [f for f in fields if f.name in inherited]


@dataclass
class Config:
    """Default of a command parameter that stands for every field of a config dataclass.

    `target` is "module:Class", imported only when the command is built. `flags` renames options
    (field → "--name" or ("--name", "-n") or "--yes/--no"), `arguments` makes fields positional,
    `required` requires fields that have a default in the library, `help` replaces a field's help where
    the command gives it a narrower meaning.
    """

    target: str
    skip: tuple[str, ...] = ()
    flags: dict[str, str | tuple[str, ...]] = field(default_factory=dict)
    arguments: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    help: dict[str, str] = field(default_factory=dict)

    def parameters(self) -> tuple[list[inspect.Parameter], Callable[[dict], Any]]:
        """The typer parameters of the fields, and the function that turns their values into the config."""
        cls = _import(self.target)
        hints = typing.get_type_hints(cls)
        named = {*self.skip, *self.flags, *self.arguments, *self.required, *self.help}
        unknown = sorted(named - {f.name for f in dataclasses.fields(cls)})
        if unknown:  # a field renamed in the library must not silently drop its CLI customisation
            raise TypeError(f"Config({self.target!r}) names fields it does not have: {unknown}")
        params, converters = [], {}
        for f in _own_fields_first(cls):
            if f.name in self.skip or not f.init:
                continue
            param, convert = self._parameter(f, hints[f.name])
            params.append(param)
            converters[f.name] = convert

        def build(values: dict) -> Any:
            return cls(**{k: converters[k](v) for k, v in values.items()})

        return params, build

    def _parameter(self, f: dataclasses.Field, hint: Any) -> tuple[inspect.Parameter, Callable]:
        default = _field_default(f)
        if f.name in self.required:
            default = ...
        tp, optional = _unwrap_optional(hint)
        if tp is Any:  # e.g. `progress: Any` also takes a live progress bar from code; the CLI gives a bool
            tp = type(default)
        help_text = self.help.get(f.name, f.metadata.get("help"))
        kwargs: dict[str, Any] = {k: f.metadata[k] for k in _OPTION_KEYS if k in f.metadata}
        decls = self.flags.get(f.name, "--" + f.name.replace("_", "-"))
        decls = (decls,) if isinstance(decls, str) else tuple(decls)
        convert: Callable = lambda v: v  # noqa: E731
        if tp is bool:
            decls, kwargs["metavar"] = _flag(decls), ""  # typer would print <bool> after a flag
        elif typing.get_origin(tp) is tuple:  # a repeatable option; () or None when not given
            tp = list[typing.get_args(tp)[0]]
            default = [] if default in (None, ...) else list(default)
            convert = lambda v: tuple(v) if v else (None if optional else ())  # noqa: E731
        elif callable(getattr(tp, "parse", None)):  # a value type with a text form (Partition: "2/8")
            kwargs["parser"], kwargs["metavar"] = tp.parse, f"<{tp.__name__.lower()}>"
            default = default if default is ... else str(default)
        if optional and tp is not bool:
            tp = tp | None
        if f.name in self.arguments:
            info = typer.Argument(default, help=help_text, **kwargs)
        else:
            info = typer.Option(default, *decls, help=help_text, **kwargs)
        return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=tp), convert


@dataclass
class Overrides:
    """Default of a command parameter standing for a few dotted keys of a nested config dataclass.

    `keys` maps option name → dotted key (`precision` → "train.precision"). The option is empty unless
    given, because the real default is the value in the file named by `source`; the help shows the
    dataclass default next to it. The function receives {dotted key: value} of the options given.
    """

    target: str
    keys: dict[str, str]
    source: str = "--config"

    def parameters(self) -> tuple[list[inspect.Parameter], Callable[[dict], dict]]:
        root = _import(self.target)
        params = []
        for name, dotted in self.keys.items():
            cls, hint = root, None
            for part in dotted.split("."):
                f = {f.name: f for f in dataclasses.fields(cls)}[part]
                hint = typing.get_type_hints(cls)[part]
                cls = hint
            help_text = f"{f.metadata.get('help', '')} Sets {dotted}.".strip()
            shown = f"{self.source}'s value; {root.__name__}: {_field_default(f)}"
            info = typer.Option(None, "--" + name.replace("_", "-"), help=help_text, show_default=shown)
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info,
                                            annotation=_unwrap_optional(hint)[0] | None))

        def build(values: dict) -> dict:
            return {self.keys[k]: v for k, v in values.items() if v is not None}

        return params, build


def build_command(func: Callable) -> Callable:
    """`func` with its Config/Overrides parameters expanded, and AvbenchError turned into one line."""
    sig = inspect.signature(func, eval_str=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[list[str], Callable]] = {}
    for p in sig.parameters.values():
        if isinstance(p.default, (Config, Overrides)):
            expanded, build = p.default.parameters()
            groups[p.name] = ([e.name for e in expanded], build)
            params += expanded
        else:
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    names = [p.name for p in params]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise TypeError(f"{func.__qualname__}: options {clashes} are defined twice; rename one with flags=")

    @functools.wraps(func)
    def command(**values: Any) -> Any:
        try:
            # inside the try: a config refuses bad values when it is built (its __post_init__)
            for group, (members, build) in groups.items():
                values[group] = build({m: values.pop(m) for m in members})
            return func(**values)
        except AvbenchError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(e.exit_code) from None

    command.__signature__ = sig.replace(parameters=params)
    # typer also reads the annotations: give it the resolved ones of the expanded signature
    command.__annotations__ = {p.name: p.annotation for p in params if p.annotation is not p.empty}
    return command


@dataclass
class Group:
    """A command group (`avbench train baseline|superres`): its help line and its commands. With a
    `default`, arguments that do not start with a command name go to that command, so a command that
    grew siblings keeps its old spelling (`avbench sample --checkpoint ...` is `avbench sample joint ...`)."""

    help: str
    commands: dict[str, Callable]
    default: str | None = None


class _DefaultCommandGroup(typer.core.TyperGroup):
    default_command: str = ""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


def _typer(help: str | None = None, **kwargs: Any) -> typer.Typer:
    # no rich markup: help texts quote TOML tables like [scenes], which markup would swallow
    return typer.Typer(help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
                       rich_markup_mode=None, **kwargs)


def to_click(name: str, entry: Callable | Group):
    """The real click command (or group) of one table entry."""
    if isinstance(entry, Group):
        extra = {}
        if entry.default is not None:
            extra["cls"] = type("DefaultGroup", (_DefaultCommandGroup,), {"default_command": entry.default})
        app = _typer(entry.help, **extra)
        app.callback()(lambda: None)  # a group even with one command (typer would collapse it)
        for sub, func in entry.commands.items():
            app.command(sub, short_help=_first_line(func))(build_command(func))
    else:
        app = _typer()
        app.command(name)(build_command(entry))
    return typer.main.get_command(app)


def _first_line(func: Callable) -> str:
    """The listing shows the docstring's first line whole (click would cut it at the terminal width)."""
    return (inspect.getdoc(func) or "").split("\n", 1)[0]


class _Deferred(typer.core.TyperCommand):
    """Stands in for a command in `avbench --help`; the real one is built when the command runs."""

    def __init__(self, name: str, entry: Callable | Group):
        doc = entry.help if isinstance(entry, Group) else _first_line(entry)
        super().__init__(name=name, short_help=doc)
        self.entry = entry

    @functools.cached_property
    def real(self):
        return to_click(self.name, self.entry)

    def make_context(self, info_name, args, parent=None, **extra):
        return self.real.make_context(info_name, args, parent=parent, **extra)


class LazyGroup(typer.core.TyperGroup):
    """The root group: every entry of `table` (name → command function or Group), built on first use."""

    table: dict[str, Callable | Group] = {}

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        for name, entry in self.table.items():
            self.add_command(_Deferred(name, entry))


def lazy_group(table: dict[str, Callable | Group]) -> type[LazyGroup]:
    return type("AvbenchGroup", (LazyGroup,), {"table": table})
