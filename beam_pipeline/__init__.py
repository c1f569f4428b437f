"""beam_pipeline: full-pass preprocessing for Keras models with tf.Transform on Apache Beam."""

__version__ = "0.1.0"
