"""Image: encoded image bytes decoded and resized in the graph (replaces Keras's image loading,
`CenterCrop`, `Rescaling` and `Normalization(axis=-1)` on pixels)."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

from beam_pipeline.features import lazy
from beam_pipeline.features.base import Feature, check_choice, check_positive
from beam_pipeline.features.normalization import KERAS_EPSILON

tf = lazy.module("tensorflow")
tft = lazy.module("tensorflow_transform")

CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
# image_dataset_from_directory's list.
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian",
                  "mitchellcubic")
# crop_to_aspect_ratio goes through keras.ops.image.resize, which knows fewer methods.
CROP_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5")
STORAGES = ("encoded", "uint8")


def _aspect_crop_box(height, width, target_h: int, target_w: int):
    """Keras smart_resize's centred box with the target's aspect ratio: (top, left, h, w).

    The float32 maths and truncations are Keras's TF path (the image's size is dynamic there).
    """
    def f32(v):
        return tf.cast(v, tf.float32)

    crop_h = tf.maximum(tf.minimum(height, tf.cast(f32(width * target_h) / target_w, tf.int32)), 1)
    crop_w = tf.maximum(tf.minimum(width, tf.cast(f32(height * target_w) / target_h, tf.int32)), 1)
    top = tf.cast(f32(height - crop_h) / 2, tf.int32)
    left = tf.cast(f32(width - crop_w) / 2, tf.int32)
    return top, left, crop_h, crop_w


def _decode_one(encoded, channels: int, size: Tuple[int, int], interpolation: str,
                crop_to_aspect_ratio: bool) -> tf.Tensor:
    """One image as Keras's `image_dataset_from_directory` (format "tf") loads it."""
    img = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    if crop_to_aspect_ratio:
        shape = tf.shape(img)
        top, left, crop_h, crop_w = _aspect_crop_box(shape[0], shape[1], *size)
        img = img[top:top + crop_h, left:left + crop_w, :]
    img = tf.image.resize(img, size, method=interpolation)  # antialias=False, as Keras
    return tf.cast(img, tf.float32)  # "nearest" keeps uint8 (Keras's loader yields uint8 then)


def _center_crop(images: tf.Tensor, size: Tuple[int, int], crop: Tuple[int, int]) -> tf.Tensor:
    """keras.layers.CenterCrop on `[batch, h, w, c]` images of static size `size`."""
    (height, width), (crop_h, crop_w) = size, crop
    if height >= crop_h and width >= crop_w:
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        return images[:, top:top + crop_h, left:left + crop_w, :]
    # A side smaller than the target: Keras smart_resizes (aspect crop, then bilinear), no pad.
    # Its static-shape path computes the box in float64.
    box_h = max(min(height, int(float(width * crop_h) / crop_w)), 1)
    box_w = max(min(width, int(float(height * crop_w) / crop_h)), 1)
    top, left = int(float(height - box_h) / 2), int(float(width - box_w) / 2)
    images = images[:, top:top + box_h, left:left + box_w, :]
    return tf.image.resize(images, crop, method="bilinear")


def decode_and_resize(encoded: tf.Tensor, color_mode: str = "rgb",
                      image_size: Sequence[int] = (256, 256), interpolation: str = "bilinear",
                      crop_to_aspect_ratio: bool = False,
                      center_crop: Optional[Sequence[int]] = None) -> tf.Tensor:
    """`[batch]` encoded images -> float32 `[batch, h, w, c]` pixels, Keras's, not rounded.

    Pixels are in [0, 255] except where bicubic, lanczos or area overshoot it (Keras keeps
    values such as -60 or 310 too).

    Each image goes through what Keras's `image_dataset_from_directory` does (decode with
    `decode_image(channels, expand_animations=False)`, so a GIF keeps its first frame; an
    optional centred crop to the target aspect ratio; `tf.image.resize` without antialias),
    then `keras.layers.CenterCrop(*center_crop)` if given. An empty string (a missing cell)
    gives zeros; bytes that do not decode raise.
    """
    size = (int(image_size[0]), int(image_size[1]))
    channels = CHANNELS[color_mode]

    def one(x):
        return tf.cond(tf.equal(x, ""),
                       lambda: tf.zeros(size + (channels,), tf.float32),
                       lambda: _decode_one(x, channels, size, interpolation,
                                           crop_to_aspect_ratio))

    images = tf.map_fn(one, tf.reshape(encoded, [-1]),
                       fn_output_signature=tf.TensorSpec(size + (channels,), tf.float32))
    if center_crop is not None:
        images = _center_crop(images, size, (int(center_crop[0]), int(center_crop[1])))
    return images


@dataclasses.dataclass(frozen=True)
class Image(Feature):
    """Encoded image bytes (JPEG, PNG, BMP, GIF) turned into pixels inside the graph.

    Pixels are exactly Keras's `image_dataset_from_directory` ones (float32 in [0, 255], not
    rounded), then `CenterCrop`, `Rescaling` and optionally `Normalization(axis=-1)`. The
    pixel work runs in the model (`model_pixels`), so training and serving share it and the
    served model takes encoded bytes.

    Options (Keras's names and defaults):
      color_mode: "grayscale", "rgb" (default) or "rgba": 1, 3 or 4 channels. As in Keras,
        grayscale cannot decode BMP or GIF and rgba cannot decode JPEG or GIF (they raise).
      image_size: [height, width] (or one int for a square), default [256, 256].
      interpolation: bilinear (default), nearest, bicubic, area, lanczos3, lanczos5,
        gaussian, mitchellcubic (the last two not with crop_to_aspect_ratio, as Keras).
      crop_to_aspect_ratio: crop the largest centred box of the target's aspect ratio before
        resizing (Keras's smart_resize). Default false: the image is stretched.
      center_crop: [height, width]: keras.layers.CenterCrop after resizing (a target larger
        than image_size smart_resizes up, bilinear, as Keras). Default none.
      scale, offset: keras.layers.Rescaling, `x * scale + offset` (default 1 and 0).
      normalize: learn the per-channel mean and population variance over every pixel of the
        train split (after resize, crop and rescale) and apply `(x - mean) / max(sqrt(var),
        1e-7)`, as Normalization(axis=-1). Missing images are left out of the statistics.
      storage: "encoded" (default: the bytes as they came, compact) or "uint8": the decoded,
        resized and cropped pixels rounded and saturated to 0..255, which loses up to 0.5 per
        pixel compared with Keras's float pixels (more where bicubic/lanczos overshoot 0..255).
        The normalize statistics are learned on the float pixels either way.

    Config example:
        features:
          photo: {kind: image, image_size: [224, 224], crop_to_aspect_ratio: true,
                  scale: 0.00392156862745098, normalize: true}

    Outputs: `<name>`: the encoded bytes (string; a missing cell is ""), or int64
    `[h, w, c]` with storage uint8 (a missing cell is all zeros). With normalize, float32 `[c]`
    `<name>_mean` and `<name>_std` (`max(sqrt(var), 1e-7)`), the same on every row, so the
    model can normalize in its graph. `<name>_missing`: int64, when asked for.
    """

    color_mode: str = "rgb"
    image_size: Sequence[int] = (256, 256)
    interpolation: str = "bilinear"
    crop_to_aspect_ratio: bool = False
    center_crop: Optional[Sequence[int]] = None
    scale: float = 1.0
    offset: float = 0.0
    normalize: bool = False
    storage: str = "encoded"

    KIND = "image"
    COLUMN_TYPES = ("string",)

    def __post_init__(self):
        # YAML gives lists; keep the frozen dataclass hashable.
        for option in ("image_size", "center_crop"):
            value = getattr(self, option)
            if isinstance(value, list):
                object.__setattr__(self, option, tuple(value))
        if isinstance(self.image_size, int) and not isinstance(self.image_size, bool):
            object.__setattr__(self, "image_size", (self.image_size, self.image_size))

    def validate(self) -> None:
        check_choice(self.color_mode, "color_mode", tuple(CHANNELS))
        for option in ("image_size", "center_crop"):
            value = getattr(self, option)
            if value is None and option == "center_crop":
                continue
            if not isinstance(value, tuple) or len(value) != 2:
                raise ValueError(f"{option}: expected [height, width], got {value!r}")
            for side in value:
                check_positive(side, option, allow_none=False)
        check_choice(self.interpolation, "interpolation", INTERPOLATIONS)
        for option in ("crop_to_aspect_ratio", "normalize"):
            if not isinstance(getattr(self, option), bool):
                raise ValueError(f"{option}: expected true or false, "
                                 f"got {getattr(self, option)!r}")
        if self.crop_to_aspect_ratio and self.interpolation not in CROP_INTERPOLATIONS:
            raise ValueError(f"interpolation: {self.interpolation!r} does not work with "
                             f"crop_to_aspect_ratio (Keras's resize knows only "
                             f"{list(CROP_INTERPOLATIONS)})")
        for option in ("scale", "offset"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{option}: expected a number, got {value!r}")
        check_choice(self.storage, "storage", STORAGES)
        if self.impute is not None:
            raise ValueError("impute: an image column cannot be imputed; a missing image is "
                             "\"\" (encoded) or zeros (uint8)")

    def learns(self):
        return ("pixel mean and variance",) if self.normalize else ()

    @property
    def channels(self) -> int:
        return CHANNELS[self.color_mode]

    @property
    def pixels_shape(self) -> Tuple[int, int, int]:
        """`[h, w, c]` of the pixels the model sees (after any center crop)."""
        height, width = self.center_crop or self.image_size
        return (height, width, self.channels)

    def decode(self, encoded: tf.Tensor) -> tf.Tensor:
        """`decode_and_resize` with this feature's options."""
        return decode_and_resize(encoded, self.color_mode, self.image_size, self.interpolation,
                                 self.crop_to_aspect_ratio, self.center_crop)

    def transform(self, inputs):
        encoded, _, outputs = self.scalar(inputs, default="")
        outputs[self.name] = encoded
        if self.storage == "encoded" and not self.normalize:
            return outputs
        pixels = self.decode(encoded)
        if self.storage == "uint8":
            outputs[self.name] = tf.cast(tf.clip_by_value(tf.round(pixels), 0.0, 255.0),
                                         tf.int64)
        if self.normalize:
            present = tf.boolean_mask(pixels, tf.not_equal(encoded, ""))
            flat = tf.reshape(present * self.scale + self.offset, [-1, self.channels])
            # Float64 from the batch sums on: a batch holds millions of pixels, and float32
            # sums drift (4e-5 relative on 128 tiles of 64x64). The float32 pixels are cast,
            # so the statistics are those of the pixels the model sees, rounded once at the end.
            # reduce_instance_dims=False reduces over the first axis only: one value per channel.
            mean = tft.mean(flat, reduce_instance_dims=False, output_dtype=tf.float64,
                            name=f"{self.name}_mean")
            var = tft.var(flat, reduce_instance_dims=False, output_dtype=tf.float64,
                          name=f"{self.name}_var")
            std = tf.maximum(tf.sqrt(var), KERAS_EPSILON)
            rows = tf.ones([tf.shape(encoded)[0], 1], tf.float32)
            outputs[f"{self.name}_mean"] = rows * tf.cast(mean, tf.float32)
            outputs[f"{self.name}_std"] = rows * tf.cast(std, tf.float32)
        return outputs


def model_pixels(stored: tf.Tensor, feature: Image, mean: Optional[tf.Tensor] = None,
                 std: Optional[tf.Tensor] = None) -> tf.Tensor:
    """What the model does with `<name>`: float32 `[batch, h, w, c]` pixels, as Keras's.

    Decodes and resizes the encoded bytes (or casts the uint8 storage), then `x * scale +
    offset`, then `(x - mean) / std` when the feature normalizes; `mean`/`std` are the
    `<name>_mean`/`<name>_std` outputs (`[batch, c]`, or `[c]`).
    """
    if feature.storage == "encoded":
        x = feature.decode(stored)
    else:
        x = tf.cast(stored, tf.float32)
    x = x * feature.scale + feature.offset
    if feature.normalize:
        if mean is None or std is None:
            raise ValueError(f"feature {feature.name!r} normalizes: pass its "
                             f"{feature.name}_mean and {feature.name}_std outputs")
        per_channel = [-1, 1, 1, feature.channels]
        x = (x - tf.reshape(tf.cast(mean, tf.float32), per_channel)) / tf.reshape(
            tf.cast(std, tf.float32), per_channel)
    return x
