"""Serving side: the built-in Keras model, training, export with the transform graph inside, predict."""
