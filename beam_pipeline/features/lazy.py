"""Heavy libraries imported on first use, so that reading a config imports no TensorFlow.

A kind module starts with `tf = lazy.module("tensorflow")` instead of `import tensorflow
as tf`: the name stands for the module, and the first attribute read (`tf.float32`, in
graph-building code) imports it. Loading and validating a config only builds the kinds'
dataclasses, so it reads none, and a config error costs no TensorFlow, tf.Transform or
Beam import (seconds each). Annotations stay unevaluated (`from __future__ import
annotations`); a module-level constant must not read an attribute of a lazy module.
"""

import importlib
import types


class LazyModule(types.ModuleType):
    """Stands for the module `name`, imported on the first attribute read.

    A ModuleType, so pickling it (cloudpickle, in a Beam DoFn's closure) pickles the module
    by name, as it would the real one.
    """

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self.__name__), attr)


def module(name: str) -> types.ModuleType:
    """The module `name`: itself if imported already, else a `LazyModule` of it."""
    import sys  # pylint: disable=import-outside-toplevel
    return sys.modules.get(name) or LazyModule(name)
