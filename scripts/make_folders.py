"""Writes a tiny seeded class-per-folder dataset, the input of Keras's folder loaders.

    python scripts/make_folders.py --out /tmp/images --kind image --per-class 8 --seed 0
    python scripts/make_folders.py --out /tmp/texts --kind text --per-class 8 --seed 0

Layout (per class folder, file i of --per-class; the default classes are A_class,
B_class and a_class, which differ only by case or sort differently by code point):

* names "Zebra" (upper case sorts first), "img_<3i>" (so "img_12" sorts before "img_3")
  and ".dot_<i>" (a dot-file: Keras lists it);
* folders: most files at the class top level, some in "sub", "sub/deeper", "sub-2" (the
  walk is sorted by path string, so "sub-2" comes before "sub/deeper") and ".thumbs" (a
  nested dot-folder, which Keras still walks);
* images: PNG, JPEG (".jpg", ".JPG", ".jpeg"), and BMP and GIF when Pillow is installed;
  6-64 px sides with random aspect ratios, grayscale or RGB;
* text: ".txt" (one ".TXT" per class) UTF-8 files of 1-40 words, some non-ASCII, each
  starting with "<class> <i>:" so contents are unique;
* ignored by the loaders: a ".hidden" class folder, a stray file in the top folder, and
  files with other extensions in the class folders ("notes.txt" among the images,
  "notes.md" among the texts, "old.<ext>.bak").

Same arguments, same bytes (with the same TensorFlow and Pillow versions).
"""

import argparse
import os

import numpy as np

DEFAULT_CLASSES = "A_class,B_class,a_class"
WORDS = ["the", "cat", "sat", "on", "a", "mat", "river", "stone", "light", "blue", "run",
         "café", "naïve", "straße", "Ünïcödé", "日本語", "ελληνικά", "😀", "résumé", "über"]


def _has_pillow():
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def _placement(i):
    """(subfolder, base name) of file i in a class folder."""
    folder = {3: "sub", 5: "sub/deeper", 6: "sub-2", 7: ".thumbs"}.get(i % 8, "")
    if i == 0:
        name = "Zebra"
    elif i % 8 == 4:
        name = f".dot_{i}"
    else:
        name = f"img_{3 * i}"
    return folder, name


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _image_bytes(rng, ext):
    """Encoded random image with random size, aspect ratio and channel count."""
    height, width = (int(v) for v in rng.integers(6, 65, size=2))
    channels = int(rng.choice([1, 3]))
    pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    kind = ext.lower()
    if kind == ".png":
        import tensorflow as tf
        return tf.io.encode_png(pixels).numpy()
    if kind in (".jpg", ".jpeg"):
        import tensorflow as tf
        return tf.io.encode_jpeg(pixels, quality=90).numpy()
    import io

    import PIL.Image
    image = PIL.Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="BMP" if kind == ".bmp" else "GIF")
    return buffer.getvalue()


def _text_bytes(rng, class_name, i):
    count = int(rng.integers(1, 41))
    words = [WORDS[int(k)] for k in rng.integers(0, len(WORDS), size=count)]
    # A line break now and then, so files are not all one line.
    body = " ".join(w + ("\n" if rng.random() < 0.1 else "") for w in words)
    body = body.replace("\n ", "\n")
    return f"{class_name} {i}: {body}".encode("utf-8")


def make_folders(out, kind, per_class, seed, classes):
    """Writes the dataset under `out` (which must be missing or empty)."""
    if per_class < 1:
        raise SystemExit("--per-class must be at least 1")
    if os.path.isdir(out) and os.listdir(out):
        raise SystemExit(f"--out {out} is not empty")
    rng = np.random.default_rng(seed)
    if kind == "image":
        exts = [".png", ".jpg", ".JPG", ".jpeg"] + ([".bmp", ".gif"] if _has_pillow() else [])
        make = lambda cls, i, ext: _image_bytes(rng, ext)
        ignored = "notes.txt"
    else:
        exts = [".txt", ".txt", ".txt", ".TXT"]
        make = lambda cls, i, ext: _text_bytes(rng, cls, i)
        ignored = "notes.md"
    for ci, cls in enumerate(classes):
        for i in range(per_class):
            folder, name = _placement(i)
            # Offset by class, so every class gets a mix of extensions.
            ext = exts[(i + ci) % len(exts)]
            _write(os.path.join(out, cls, folder, name + ext), make(cls, i, ext))
        _write(os.path.join(out, cls, ignored), b"not part of the dataset\n")
        _write(os.path.join(out, cls, "old" + exts[0] + ".bak"), make(cls, -1, exts[0]))
    # A dot-folder is never a class, and top-level files never belong to one.
    for i in range(2):
        _write(os.path.join(out, ".hidden", f"h_{i}{exts[0]}"), make(".hidden", i, exts[0]))
    _write(os.path.join(out, "stray" + exts[0]), make("stray", 0, exts[0]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory (missing or empty)")
    parser.add_argument("--kind", choices=["image", "text"], default="image")
    parser.add_argument("--per-class", type=int, default=8, help="files per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", default=DEFAULT_CLASSES,
                        help=f"comma-separated class folder names (default {DEFAULT_CLASSES})")
    args = parser.parse_args(argv)
    classes = [c for c in args.classes.split(",") if c]
    make_folders(args.out, args.kind, args.per_class, args.seed, classes)


if __name__ == "__main__":
    main()
