"""Every error class the course's package defines derives from effcourse.errors.EffcourseError.

The test walks the whole package, imports every module and collects each exception class
defined there, so a new error class cannot forget the common base. Each also keeps its
built-in base, so ``except ValueError`` (etc.) written before the common base existed
still catches it.
"""

import importlib
import inspect
import pkgutil

import pytest

import effcourse
from effcourse.errors import EffcourseError

# Modules that are scripts, not importable library modules (they run on import).
NOT_IMPORTABLE = {"effcourse._mw_worker"}

# Error classes that live in modules being converted by another change right now. The
# lead empties this list once those modules derive from EffcourseError too; an entry here
# that already derives from it makes the test fail, so the list cannot go stale.
PENDING: set[str] = set()

# The built-in base each course error keeps (so existing ``except`` clauses still work).
BUILTIN_BASE = {
    "effcourse.checks.CheckFailed": AssertionError,
    "effcourse.convert.ConversionError": ValueError,
    "effcourse.data.DataError": RuntimeError,
    "effcourse.env.Keras3Error": RuntimeError,
    "effcourse.models.ModelError": TypeError,
    "effcourse.quantize.QuantizeError": ValueError,
    "effcourse.results.ResultError": ValueError,
    "effcourse.search.BudgetError": RuntimeError,
    "effcourse.search.StudyFileError": RuntimeError,
}


def _modules():
    names = [effcourse.__name__]
    for info in pkgutil.walk_packages(effcourse.__path__, prefix="effcourse."):
        if info.name not in NOT_IMPORTABLE:
            names.append(info.name)
    return names


def _error_classes():
    found = {}
    for name in _modules():
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
                and obj is not EffcourseError
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_the_walk_finds_the_known_errors():
    found = _error_classes()
    assert set(BUILTIN_BASE) <= set(found), sorted(set(BUILTIN_BASE) - set(found))
    assert len(found) >= 9  # the issue counted nine error classes


def test_every_error_derives_from_effcourse_error():
    found = _error_classes()
    missing = sorted(
        name for name, cls in found.items() if not issubclass(cls, EffcourseError) and name not in PENDING
    )
    assert not missing, f"derive these from effcourse.errors.EffcourseError too: {missing}"
    stale = sorted(name for name in PENDING if name in found and issubclass(found[name], EffcourseError))
    assert not stale, f"already converted, remove from PENDING: {stale}"


@pytest.mark.parametrize("name", sorted(BUILTIN_BASE))
def test_each_error_keeps_its_builtin_base(name):
    cls = _error_classes()[name]
    assert issubclass(cls, BUILTIN_BASE[name]) and issubclass(cls, EffcourseError)
    with pytest.raises(BUILTIN_BASE[name]):
        raise cls("still caught by its built-in base")
