"""The `image` kind against Keras: image loading, CenterCrop, Rescaling and Normalization."""

import io
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image as PILImage

from beam_pipeline.features.image import Image, decode_and_resize, model_pixels

SIZE = (20, 28)  # a different aspect ratio from every test image, up- and downscaled


def _smooth(height, width, channels, seed):
    """A gradient plus noise, so that each interpolation gives different pixels."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 / width + 60 * c + y * 3) % 256 for c in range(channels)], -1)
    return np.clip(base + rng.randint(-25, 25, base.shape), 0, 255).astype(np.uint8)


# (class folder, file name, PIL mode, height, width)
IMAGES = [
    ("a", "wide.png", "RGB", 30, 45),
    ("a", "tall.jpg", "RGB", 50, 23),
    ("a", "gray.png", "L", 17, 17),
    ("b", "rgba.png", "RGBA", 12, 40),
    ("b", "gray.jpg", "L", 64, 40),
    ("b", "small.bmp", "RGB", 9, 13),
    ("b", "anim.gif", "P", 26, 31),
]


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for i, (folder, name, mode, height, width) in enumerate(IMAGES):
        os.makedirs(root / folder, exist_ok=True)
        channels = {"RGB": 3, "L": 1, "RGBA": 4, "P": 3}[mode]
        pixels = _smooth(height, width, channels, seed=i)
        img = PILImage.fromarray(pixels[..., 0] if channels == 1 else pixels)
        path = str(root / folder / name)
        if mode == "P":  # two frames: Keras keeps the first
            frames = [img.convert("P"), PILImage.fromarray(255 - pixels).convert("P")]
            frames[0].save(path, save_all=True, append_images=frames[1:])
        else:
            img.save(path, quality=90) if name.endswith(".jpg") else img.save(path)
    return str(root)


# decode_image cannot give 1 channel from BMP or GIF, nor 4 from JPEG or GIF; Keras's loader
# fails on those files, and so does the kind.
DECODABLE = {"rgb": (".png", ".jpg", ".bmp", ".gif"), "grayscale": (".png", ".jpg"),
             "rgba": (".png", ".bmp")}


def decodable_dir(image_dir, color_mode):
    """A class-per-folder copy (hard links) of the images this color mode can decode."""
    root = os.path.join(os.path.dirname(image_dir), f"{os.path.basename(image_dir)}-{color_mode}")
    if not os.path.isdir(root):
        for folder, name, *_ in IMAGES:
            if name.endswith(DECODABLE[color_mode]):
                os.makedirs(os.path.join(root, folder), exist_ok=True)
                os.link(os.path.join(image_dir, folder, name), os.path.join(root, folder, name))
    return root


def keras_load(directory, **kwargs):
    """Keras's pixels (float32) and the bytes of the same files, in the loader's order."""
    ds = keras.utils.image_dataset_from_directory(directory, shuffle=False, batch_size=4,
                                                  image_size=SIZE, **kwargs)
    pixels = np.concatenate([np.asarray(x, np.float32) for x, _ in ds])
    encoded = [tf.io.read_file(p).numpy() for p in ds.file_paths]
    return pixels, encoded


def ours(encoded, **kwargs):
    return decode_and_resize(tf.constant(encoded), image_size=SIZE, **kwargs).numpy()


@pytest.mark.parametrize("color_mode", ["rgb", "grayscale"])
@pytest.mark.parametrize("crop", [False, True])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic", "area",
                                           "lanczos3", "lanczos5", "gaussian",
                                           "mitchellcubic"])
def test_decode_and_resize_equals_keras_loader(image_dir, interpolation, crop, color_mode):
    if crop and interpolation in ("gaussian", "mitchellcubic"):
        with pytest.raises(ValueError, match="crop_to_aspect_ratio"):
            Image.from_options("img", "img", "string", {"interpolation": interpolation,
                                                        "crop_to_aspect_ratio": True})
        return
    options = {"interpolation": interpolation, "crop_to_aspect_ratio": crop,
               "color_mode": color_mode}
    expected, encoded = keras_load(decodable_dir(image_dir, color_mode), **options)
    got = ours(encoded, **options)
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    assert expected.shape[1:] == (*SIZE, 1 if color_mode == "grayscale" else 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_rgba(image_dir):
    expected, encoded = keras_load(decodable_dir(image_dir, "rgba"), color_mode="rgba")
    assert expected.shape[1:] == (*SIZE, 4)
    np.testing.assert_allclose(ours(encoded, color_mode="rgba"), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("color_mode, name", [("grayscale", "anim.gif"),
                                              ("grayscale", "small.bmp"),
                                              ("rgba", "tall.jpg")])
def test_undecodable_for_color_mode_raises_as_keras(image_dir, color_mode, name):
    folder = next(f for f, n, *_ in IMAGES if n == name)
    with open(os.path.join(image_dir, folder, name), "rb") as f:
        encoded = f.read()
    with pytest.raises(tf.errors.InvalidArgumentError):
        ours([encoded], color_mode=color_mode)
    with pytest.raises(tf.errors.InvalidArgumentError):
        keras_load(image_dir, color_mode=color_mode)


@pytest.mark.parametrize("crop", [(12, 20), (13, 27), (20, 28), (30, 16), (24, 40)])
def test_center_crop_equals_keras(image_dir, crop):
    """Slices when the image is at least the target, else Keras's smart_resize (no padding)."""
    pixels, encoded = keras_load(image_dir)
    expected = np.asarray(keras.layers.CenterCrop(*crop)(pixels))
    got = ours(encoded, center_crop=crop)
    assert got.shape == expected.shape == (len(IMAGES), *crop, 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_rescaling_equals_keras(image_dir):
    pixels, encoded = keras_load(image_dir, interpolation="bicubic")
    expected = np.asarray(keras.layers.Rescaling(1 / 127.5, offset=-1.0)(pixels))
    feature = Image.from_options("img", "img", "string", {
        "image_size": list(SIZE), "interpolation": "bicubic", "scale": 1 / 127.5,
        "offset": -1.0})
    got = model_pixels(tf.constant(encoded), feature).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_uint8_storage_rounds_and_saturates(image_dir):
    """Eager transform (no analyzer without normalize); bicubic overshoots 0..255."""
    pixels, encoded = keras_load(image_dir, interpolation="bicubic")
    assert pixels.min() < 0 and pixels.max() > 255
    feature = Image.from_options("img", "img", "string", {
        "image_size": list(SIZE), "interpolation": "bicubic", "storage": "uint8"})
    n = len(encoded)
    sparse = tf.SparseTensor([[i, 0] for i in range(n)], encoded, [n, 1])
    stored = feature.transform({"img": sparse})["img"]
    assert stored.dtype == tf.int64
    np.testing.assert_array_equal(stored.numpy(), np.clip(np.round(pixels), 0, 255))


def test_missing_cell_decodes_to_zeros():
    got = decode_and_resize(tf.constant([b""]), image_size=(4, 5), color_mode="grayscale")
    np.testing.assert_array_equal(got.numpy(), np.zeros((1, 4, 5, 1), np.float32))


@pytest.mark.parametrize("options, message", [
    ({"color_mode": "bgr"}, "color_mode"),
    ({"image_size": [0, 3]}, "image_size"),
    ({"image_size": [3, 4, 5]}, "image_size"),
    ({"center_crop": 5}, "center_crop"),
    ({"interpolation": "cubic"}, "interpolation"),
    ({"crop_to_aspect_ratio": "yes"}, "crop_to_aspect_ratio"),
    ({"scale": "1/255"}, "scale"),
    ({"normalize": 1}, "normalize"),
    ({"storage": "png"}, "storage"),
    ({"impute": "most_frequent"}, "impute"),
])
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        Image.from_options("img", "img", "string", options)


def test_options_and_id_space():
    feature = Image.from_options("img", "img", "string",
                                 {"image_size": 32, "center_crop": [30, 20]})
    assert feature.image_size == (32, 32) and feature.center_crop == (30, 20)
    assert feature.pixels_shape == (30, 20, 3)
    assert feature.id_space(None) is None
    hash(feature)  # lists from YAML became tuples


def test_tft_statistics_and_storages(image_dir, tmp_path):
    """One tf.Transform run, normalize on, both storages; a missing image is left out."""
    import tensorflow_transform.beam as tft_beam  # pylint: disable=import-outside-toplevel
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    options = {"image_size": list(SIZE), "crop_to_aspect_ratio": True, "center_crop": [16, 24],
               "scale": 1 / 255, "offset": 0.5, "normalize": True}
    features = [Image.from_options(name, "img", "string", dict(options, storage=storage))
                for name, storage in (("enc", "encoded"), ("u8", "uint8"))]
    keras_raw, encoded = keras_load(image_dir, crop_to_aspect_ratio=True)
    keras_raw = np.asarray(keras.layers.CenterCrop(16, 24)(keras_raw))
    keras_px = np.asarray(keras.layers.Rescaling(1 / 255, offset=0.5)(keras_raw))

    instances = [{"img": [e]} for e in encoded] + [{"img": []}]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
        {"img": tf.io.VarLenFeature(tf.string)}))

    def preprocessing_fn(inputs):
        outputs = {}
        for feature in features:
            outputs.update(feature.transform(inputs))
        return outputs

    with tft_beam.Context(temp_dir=str(tmp_path / "tmp"), desired_batch_size=3):
        (rows, _), _ = ((instances, metadata)
                        | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn))
    assert len(rows) == len(instances)
    *rows, missing = rows

    def column(key, shape=None, dtype=None):
        return np.stack([np.asarray(r[key], dtype).reshape(shape or np.shape(r[key]))
                         for r in rows])

    flat = keras_px.reshape(-1, 3).astype(np.float64)
    for name in ("enc", "u8"):
        mean, std = column(f"{name}_mean"), column(f"{name}_std")
        assert mean.shape == std.shape == (len(rows), 3)
        np.testing.assert_allclose(mean, np.broadcast_to(flat.mean(0), mean.shape), rtol=1e-7)
        np.testing.assert_allclose(std, np.broadcast_to(flat.std(0), std.shape), rtol=1e-7)
        np.testing.assert_allclose(missing[f"{name}_mean"], flat.mean(0), rtol=1e-7)

    # The encoded storage keeps the bytes; the model reproduces Keras's Normalization.
    assert [r["enc"] for r in rows] == encoded and missing["enc"] == b""
    norm = keras.layers.Normalization(axis=-1)
    norm.adapt(keras_px)
    expected = np.asarray(norm(keras_px))
    got = model_pixels(tf.constant([r["enc"] for r in rows]), features[0],
                       column("enc_mean"), column("enc_std")).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)

    # uint8: rounded and saturated pixels (before rescaling); a missing image is zeros.
    stored = column("u8", (16, 24, 3))
    assert stored.dtype == np.int64
    want = np.clip(np.round(keras_raw), 0, 255)
    off = stored != want
    assert (np.abs(stored - want)[off] == 1).all()
    assert (np.abs(np.abs(keras_raw - np.floor(keras_raw))[off] - 0.5) < 1e-3).all()
    assert not np.asarray(missing["u8"]).any()
    # Its model pixels are Keras's up to the rounding: at most 0.5 / 255 / std.
    got_u8 = model_pixels(tf.constant(stored), features[1], column("u8_mean"),
                          column("u8_std")).numpy()
    assert np.abs(got_u8 - expected).max() <= 0.5 / 255 / flat.std(0).min() + 1e-4


def _bright_tiles(count, size, seed):
    """`count` JPEG tiles, bright (mean near 200) with moderate spread, and their pixels as
    the kind decodes them. A large mean next to a small spread is where float32
    accumulation of the statistics shows."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:size, 0:size]
    encoded = []
    for i in range(count):
        base = 190 + 12 * np.sin(x / (3 + i % 5) + i)[..., None] + 8 * np.cos(y / 4 - i)[..., None]
        tile = base + np.array([0, 10, -10]) + rng.normal(0, 6, (size, size, 3))
        buf = io.BytesIO()
        PILImage.fromarray(np.clip(tile, 0, 255).astype(np.uint8)).save(buf, format="JPEG",
                                                                        quality=85)
        encoded.append(buf.getvalue())
    pixels = decode_and_resize(tf.constant(encoded), image_size=(size, size)).numpy()
    return encoded, pixels


def test_tft_statistics_match_float64_numpy_on_many_tiles(tmp_path):
    """128 JPEG tiles of 64x64: the learned per-channel mean and std are float64 numpy's
    rounded to float32 (relative error < 1e-7), not float32 sums' (they drifted 4e-5)."""
    import tensorflow_transform.beam as tft_beam  # pylint: disable=import-outside-toplevel
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    encoded, pixels = _bright_tiles(128, 64, seed=3)
    feature = Image.from_options("img", "img", "string",
                                 {"image_size": [64, 64], "normalize": True})
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
        {"img": tf.io.VarLenFeature(tf.string)}))
    with tft_beam.Context(temp_dir=str(tmp_path / "tmp"), desired_batch_size=32):
        (rows, _), _ = (([{"img": [e]} for e in encoded], metadata)
                        | tft_beam.AnalyzeAndTransformDataset(feature.transform))
    flat = pixels.reshape(-1, 3).astype(np.float64)
    for key, want in (("img_mean", flat.mean(0)), ("img_std", flat.std(0))):
        got = np.asarray(rows[0][key], np.float64)
        assert np.abs(got / want - 1).max() < 1e-7, (key, got, want, got / want - 1)
