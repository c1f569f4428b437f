"""Feature kinds, each named after the Keras preprocessing layer it replaces.

A kind turns its config options into tf.Transform analyzers plus graph ops; it never
touches Beam. Adding a kind means one new module here and one entry in KINDS.
Kind modules import TensorFlow and tf.Transform on first use (`lazy`), so that loading and
validating a config (config.py) imports neither.
docs/feature-kinds.md documents every kind beside its Keras layer.
"""

from beam_pipeline.features.base import Feature
from beam_pipeline.features.category_encoding import CategoryEncoding
from beam_pipeline.features.discretization import Discretization
from beam_pipeline.features.hashed_crossing import HashedCrossing
from beam_pipeline.features.hashing import Hashing
from beam_pipeline.features.image import Image
from beam_pipeline.features.label import Label
from beam_pipeline.features.lookup import IntegerLookup, StringLookup
from beam_pipeline.features.min_max import MinMax
from beam_pipeline.features.normalization import Normalization
from beam_pipeline.features.passthrough import Passthrough
from beam_pipeline.features.rescaling import Rescaling
from beam_pipeline.features.text_vectorization import TextVectorization

KINDS = {
    cls.KIND: cls
    for cls in (Normalization, MinMax, Rescaling, Discretization, StringLookup, IntegerLookup,
                TextVectorization, Hashing, HashedCrossing, CategoryEncoding, Image, Passthrough)
}

__all__ = ["CategoryEncoding", "Discretization", "Feature", "HashedCrossing", "Hashing",
           "Image", "IntegerLookup", "KINDS", "Label", "MinMax", "Normalization", "Passthrough",
           "Rescaling", "StringLookup", "TextVectorization"]
