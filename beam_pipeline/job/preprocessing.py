"""Config features -> one tf.Transform `preprocessing_fn`, or the user's own."""

import importlib
import types
from typing import Callable, Dict

import tensorflow as tf
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.config import Config, ConfigError
from beam_pipeline.features import packing

PreprocessingFn = Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]


def _module_from_file(path: str) -> types.ModuleType:
    """The module of the Python file at `path`, local or on any Beam file system (gs://):
    read through `FileSystems`, so it needs no local copy. The function runs on the driver
    only (tf.Transform traces it there), so workers never import it."""
    if not FileSystems.exists(path):
        raise ConfigError(f"preprocessing_fn: file {path} does not exist")
    with FileSystems.open(path) as f:
        source = f.read().decode("utf-8")
    module = types.ModuleType("user_preprocessing")
    module.__file__ = path
    exec(compile(source, path, "exec"), module.__dict__)  # pylint: disable=exec-used
    return module


def load_user_function(spec: str) -> PreprocessingFn:
    """Loads "package.module:function" or "path/to/file.py:function" (the file local or
    on gs://)."""
    target, _, function = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            module = _module_from_file(target)
        else:
            module = importlib.import_module(target)
    except ImportError as e:
        raise ConfigError(f"preprocessing_fn: cannot import {target!r}: {e}") from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise ConfigError(f"preprocessing_fn: {target!r} has no function {function!r}")
    return fn


def preprocessing_fn_for(config: Config, pack: bool = True) -> PreprocessingFn:
    """The `preprocessing_fn` tf.Transform runs: the config's features (and label) or the user's.

    With `pack` (the default), analyzers of one kind run packed across the features (see
    `features.packing`): the same vocabularies and statistics, with Beam stages that do
    not grow per feature. `pack=False` gives each feature its own analyzers."""
    if config.preprocessing_fn:
        return load_user_function(config.preprocessing_fn)
    parts = config.features + ((config.label,) if config.label else ())

    def preprocessing_fn(inputs):
        plan = packing.Pack()
        if pack:
            for feature in parts:
                feature.plan(inputs, plan)
        outputs = {}
        with plan.analyze():
            for feature in parts:
                outputs.update(feature.transform(inputs))
        return outputs

    return preprocessing_fn
