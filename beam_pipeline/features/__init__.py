"""Feature kinds, each named after the Keras preprocessing layer it replaces.

A kind turns its config options into tf.Transform analyzers plus graph ops; it never
touches Beam. Adding a kind means one new module here and one entry in KINDS.
"""

from beam_pipeline.features.base import Feature
from beam_pipeline.features.label import Label
from beam_pipeline.features.lookup import IntegerLookup, StringLookup
from beam_pipeline.features.normalization import Normalization
from beam_pipeline.features.passthrough import Passthrough
from beam_pipeline.features.text_vectorization import TextVectorization

KINDS = {
    cls.KIND: cls
    for cls in (Normalization, StringLookup, IntegerLookup, TextVectorization, Passthrough)
}

__all__ = ["Feature", "KINDS", "Label", "IntegerLookup", "Normalization", "Passthrough", "StringLookup",
           "TextVectorization"]
