"""Config features -> one tf.Transform `preprocessing_fn`, or the user's own."""

import importlib
import importlib.util
from typing import Callable, Dict

import tensorflow as tf
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.config import Config, ConfigError

PreprocessingFn = Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]


def load_user_function(spec: str) -> PreprocessingFn:
    """Loads "package.module:function" or "path/to/file.py:function"."""
    target, _, function = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            if not FileSystems.exists(target):
                raise ConfigError(f"preprocessing_fn: file {target} does not exist")
            module_spec = importlib.util.spec_from_file_location("user_preprocessing", target)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ImportError as e:
        raise ConfigError(f"preprocessing_fn: cannot import {target!r}: {e}") from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise ConfigError(f"preprocessing_fn: {target!r} has no function {function!r}")
    return fn


def preprocessing_fn_for(config: Config) -> PreprocessingFn:
    """The `preprocessing_fn` tf.Transform runs: the config's features (and label) or the user's."""
    if config.preprocessing_fn:
        return load_user_function(config.preprocessing_fn)
    parts = config.features + ((config.label,) if config.label else ())

    def preprocessing_fn(inputs):
        outputs = {}
        for feature in parts:
            outputs.update(feature.transform(inputs))
        return outputs

    return preprocessing_fn
