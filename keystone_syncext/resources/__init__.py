"""The synced resource types of protocol v1, in dependency order.

There is no list of types here: every module of this package is
imported, each ``base.ResourceType`` subclass that declares a ``name``
registers itself, and the registry holds one instance per row of the
type table (:mod:`keystone_syncext.common.types`), in the table's order.
A row without a class, or a class without a row, is an error at import.
"""

import importlib
import pkgutil

from keystone_syncext import exception
from keystone_syncext.common import types
from keystone_syncext.resources import base


def _import_modules() -> None:
    """Import every module of this package (not its subpackages), so that
    each resource class registers itself."""
    for module in pkgutil.iter_modules(__path__):
        if not module.ispkg:
            importlib.import_module(f'{__name__}.{module.name}')


def _build(classes: dict[str, type]) -> dict[str, base.ResourceType]:
    """One instance of each registered class, in the type table's order;
    ``RuntimeError`` when a row of the table has no class."""
    missing = [name for name in types.ORDER if name not in classes]
    if missing:
        raise RuntimeError(
            'the type table has rows without a resource class in '
            f'keystone_syncext.resources: {", ".join(missing)}')
    return {name: classes[name]() for name in types.ORDER}


_import_modules()
TYPES: dict[str, base.ResourceType] = _build(base.registered())


def get(name: str) -> base.ResourceType:
    """The type called ``name``; 404 for anything else."""
    try:
        return TYPES[name]
    except (KeyError, TypeError):
        raise exception.NotFound(
            f'unknown resource type {name!r}; this site syncs: '
            f'{", ".join(TYPES)}') from None


def rank(name: str) -> int:
    """Position in dependency order (creates go low to high): the type
    table's (:func:`keystone_syncext.common.types.rank`)."""
    return types.rank(name)
