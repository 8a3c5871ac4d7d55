"""Self-supervised methods, one module each, on the interface of ``cl_jax.methods.base``.

Every module of this package that defines a ``Method`` subclass with a ``name`` is
registered in ``METHODS``: adding a method is adding one file.
"""

import importlib
import pkgutil

from cl_jax.methods.base import LossAux, Method, Network


def _discover():
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    found, stack = {}, list(Method.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if "name" in vars(cls) and cls.__module__.startswith(__name__):
            found[cls.name] = cls
    return dict(sorted(found.items()))


METHODS = _discover()


def create_method(config, encoder, num_classes=0, total_steps=1, steps_per_epoch=1.0) -> Method:
    """Instantiates the method named ``config.name`` (a ``config.method`` ConfigDict)."""
    if config.name not in METHODS:
        available = ", ".join(sorted(METHODS))
        raise ValueError(f"Unknown method {config.name!r}; available: {available}.")
    return METHODS[config.name](config, encoder, num_classes, total_steps, steps_per_epoch)


__all__ = ["METHODS", "LossAux", "Method", "Network", "create_method"]
