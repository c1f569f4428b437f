"""A user's own preprocessing_fn, the tf.Transform escape hatch (used by the tests)."""

import tensorflow as tf
import tensorflow_transform as tft


def preprocessing_fn(inputs):
    x = tft.sparse_tensor_to_dense_with_shape(inputs["f_normal"], [None, 1], 0.0)
    city = tft.sparse_tensor_to_dense_with_shape(inputs["cat_small"], [None, 1], "")
    return {
        "x_scaled": tf.squeeze(tft.scale_to_0_1(x), 1),
        "city_id": tf.squeeze(tft.compute_and_apply_vocabulary(city, vocab_filename="city"), 1),
        "id": tf.squeeze(tft.sparse_tensor_to_dense_with_shape(inputs["id"], [None, 1], 0), 1),
    }
