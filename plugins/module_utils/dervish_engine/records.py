"""``@record``: the part of ``@dataclass`` the engine uses, without its start-up cost.

``dataclasses`` (with ``inspect``) takes ~7 ms to import and ~0.5 ms per class to generate code with
``exec``; ``dervish image`` defines a dozen such classes before rsync can start. ``@record`` gives a class
the same ``__init__`` (fields in annotation order, defaults, ``field(default_factory=...)``), ``__repr__``
(``field(repr=False)`` left out), ``__eq__`` and, with ``frozen=True``, read-only attributes and a hash
over the fields; without ``frozen`` a record is unhashable, as a dataclass with ``eq=True`` is.
Not supported (not used by the engine): ``__post_init__``, ``InitVar``, ordering, keyword-only fields,
inheritance between records.
"""

from __future__ import annotations

MISSING = object()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class Field:
    __slots__ = ("default", "default_factory", "repr")

    def __init__(self, default=MISSING, default_factory=MISSING, repr=True):  # noqa: A002 (dataclasses' name)
        self.default = default
        self.default_factory = default_factory
        self.repr = repr


def field(*, default=MISSING, default_factory=MISSING, repr=True):  # noqa: A002
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, repr)


def _init(self, *args, **kwargs):
    cls = type(self)
    fields = cls.__record_fields__
    if len(args) > len(fields):
        raise TypeError(f"{cls.__name__}.__init__() takes {len(fields) + 1} positional arguments "
                        f"but {len(args) + 1} were given")
    setter = object.__setattr__
    used = 0
    for position, (name, default, factory) in enumerate(fields):
        if position < len(args):
            if name in kwargs:
                raise TypeError(f"{cls.__name__}.__init__() got multiple values for argument '{name}'")
            value = args[position]
        elif name in kwargs:
            value = kwargs[name]
            used += 1
        elif factory is not MISSING:
            value = factory()
        elif default is not MISSING:
            value = default
        else:
            raise TypeError(f"{cls.__name__}.__init__() missing required argument: '{name}'")
        setter(self, name, value)
    if used != len(kwargs):
        names = {f[0] for f in fields}
        unknown = next(k for k in kwargs if k not in names)
        raise TypeError(f"{cls.__name__}.__init__() got an unexpected keyword argument '{unknown}'")


def _repr(self):
    cls = type(self)
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in cls.__record_repr__)
    return f"{cls.__qualname__}({shown})"


def _values(self):
    return tuple(getattr(self, f[0]) for f in type(self).__record_fields__)


def _eq(self, other):
    if other.__class__ is self.__class__:
        return _values(self) == _values(other)
    return NotImplemented


def _hash(self):
    return hash(_values(self))


def _frozen_setattr(self, name, value):
    raise FrozenInstanceError(f"cannot assign to field '{name}'")


def _frozen_delattr(self, name):
    raise FrozenInstanceError(f"cannot delete field '{name}'")


def _make(cls, frozen: bool):
    fields = []
    shown = []
    seen_default = False
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = cls.__dict__.get(name, MISSING)
        if isinstance(value, Field):
            spec = value
            if spec.default is MISSING:
                delattr(cls, name)  # as dataclasses: no class attribute for a factory or required field
            else:
                setattr(cls, name, spec.default)
        else:
            spec = Field(default=value)
        has_default = spec.default is not MISSING or spec.default_factory is not MISSING
        if seen_default and not has_default:
            raise TypeError(f"non-default argument '{name}' follows default argument")
        seen_default = seen_default or has_default
        fields.append((name, spec.default, spec.default_factory))
        if spec.repr:
            shown.append(name)
    cls.__record_fields__ = tuple(fields)
    cls.__record_repr__ = tuple(shown)
    cls.__init__ = _init
    if "__repr__" not in cls.__dict__:
        cls.__repr__ = _repr
    if "__eq__" not in cls.__dict__:
        cls.__eq__ = _eq
    if cls.__dict__.get("__hash__") is None:  # none of its own, or the None that a class-body __eq__ sets
        cls.__hash__ = _hash if frozen else None
    if frozen:
        cls.__setattr__ = _frozen_setattr
        cls.__delattr__ = _frozen_delattr
    return cls


def record(cls=None, *, frozen: bool = False):
    """``@record`` / ``@record(frozen=True)``: like ``@dataclass`` / ``@dataclass(frozen=True)``."""
    if cls is None:
        return lambda c: _make(c, frozen)
    return _make(cls, frozen)
