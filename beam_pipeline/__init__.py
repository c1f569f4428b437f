"""beam_pipeline: full-pass preprocessing for Keras models with tf.Transform on Apache Beam.

The Python API is `beam_pipeline.api`; its names are here too, imported on first use
(importing `beam_pipeline` alone, as the CLI does, loads neither TensorFlow nor Beam):

    import beam_pipeline as bp
    run = bp.open_output("examples/sample/config.yaml")
"""

__version__ = "0.1.0"

_API = ("open_output", "Output", "TransformedFeature", "TransformLayer")
__all__ = list(_API)


def __getattr__(name):
    if name in _API:
        from beam_pipeline import api  # pylint: disable=import-outside-toplevel
        return getattr(api, name)
    raise AttributeError(f"module 'beam_pipeline' has no attribute {name!r}")
