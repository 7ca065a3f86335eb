"""@record: the dataclass behaviour the engine relies on, without importing dataclasses."""

from __future__ import annotations

import dataclasses
from typing import List

import pytest

from dervish_engine.records import FrozenInstanceError, field, record


@record
class Plain:
    """A mutable record."""

    name: str
    count: int = 0
    items: List[str] = field(default_factory=list)
    hidden: dict = field(default_factory=dict, repr=False)


@record(frozen=True)
class Frozen:
    a: int
    b: str = "x"


@dataclasses.dataclass
class PlainDC:
    """The same as a dataclass, for comparison."""

    name: str
    count: int = 0
    items: List[str] = dataclasses.field(default_factory=list)
    hidden: dict = dataclasses.field(default_factory=dict, repr=False)


def test_init_defaults_factories_and_repr_match_dataclass():
    one, two = Plain("n"), Plain("n")
    assert one.items == [] and one.items is not two.items and one.count == 0
    assert repr(Plain("n", 2, ["i"], {"h": 1})) == repr(PlainDC("n", 2, ["i"], {"h": 1})).replace("PlainDC", "Plain")
    assert Plain(name="n", items=["a"]).items == ["a"] and Plain.count == 0 and not hasattr(Plain, "items")
    assert Plain("n", 1) == Plain(name="n", count=1) and Plain("n") != Plain("m") and Plain("n") != PlainDC("n")


def test_init_errors_like_dataclass():
    with pytest.raises(TypeError, match="missing"):
        Plain()
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        Plain("n", nope=1)
    with pytest.raises(TypeError, match="multiple values"):
        Plain("n", name="m")
    with pytest.raises(TypeError, match="positional"):
        Plain("n", 1, [], {}, 5)


def test_mutable_record_is_unhashable_and_assignable():
    p = Plain("n")
    p.count = 3
    assert p.count == 3
    with pytest.raises(TypeError):
        hash(p)


def test_frozen_record():
    f = Frozen(1)
    assert f == Frozen(1, "x") and hash(f) == hash(Frozen(1)) and len({f, Frozen(1), Frozen(2)}) == 2
    assert repr(f) == "Frozen(a=1, b='x')"
    with pytest.raises(FrozenInstanceError):
        f.a = 2
    with pytest.raises(AttributeError):
        del f.b


def test_non_default_after_default_is_rejected():
    with pytest.raises(TypeError, match="non-default argument"):
        @record
        class Bad:
            a: int = 0
            b: int
