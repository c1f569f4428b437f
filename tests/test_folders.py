"""beam_pipeline.sources.folders against Keras's own folder loaders.

Datasets come from scripts/make_folders.py (run as a subprocess, once per layout), and every
expectation is what `keras.utils.image_dataset_from_directory` /
`text_dataset_from_directory` return for the same folder: `.file_paths` (image loader only;
the text loader has no such attribute, so texts are matched by their unique contents),
`.class_names`, and the labels it yields.
"""

import collections
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from beam_pipeline.sources.folders import (
    IMAGE_EXTENSIONS,
    TEXT_EXTENSIONS,
    list_labelled_files,
    validation_subsets,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "make_folders.py")
CLASSES = ["A_class", "B_class", "a_class"]  # The generator's default, in code-point order.


def _make(out, kind, per_class=8, seed=0, classes=None):
    cmd = [sys.executable, SCRIPT, "--out", str(out), "--kind", kind,
           "--per-class", str(per_class), "--seed", str(seed)]
    if classes:
        cmd += ["--classes", ",".join(classes)]
    subprocess.run(cmd, check=True, capture_output=True)
    return str(out)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    return _make(tmp_path_factory.mktemp("folders") / "images", "image")


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    return _make(tmp_path_factory.mktemp("folders") / "texts", "text")


def _keras_images(directory, **kwargs):
    return keras.utils.image_dataset_from_directory(
        directory, image_size=(8, 8), batch_size=None, verbose=False, **kwargs)


def _keras_texts(directory, **kwargs):
    return keras.utils.text_dataset_from_directory(
        directory, batch_size=None, verbose=False, **kwargs)


def _labels(dataset):
    return [int(label) for _, label in dataset.as_numpy_iterator()]


def _texts(dataset):
    return [(bytes(text), int(label)) for text, label in dataset.as_numpy_iterator()]


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _rel(directory, paths):
    return [os.path.relpath(p, directory) for p in paths]


# --- The generator ------------------------------------------------------------------------


def test_generator_writes_the_promised_variety(image_dir, text_dir, tmp_path):
    image = pytest.importorskip("PIL.Image")
    found = collections.Counter()
    sizes, modes = set(), set()
    for root, _, names in os.walk(image_dir):
        for name in names:
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            with image.open(os.path.join(root, name)) as img:
                found[img.format] += 1
                sizes.add(img.size)
                modes.add(img.mode)
                assert max(img.size) <= 64
    assert set(found) == {"PNG", "JPEG", "BMP", "GIF"}
    assert len({w / h for w, h in sizes}) > 10  # Varied aspect ratios.
    assert {"L", "RGB"} <= modes
    assert os.path.exists(os.path.join(image_dir, "A_class", "img_6.JPG"))

    texts = [_read(os.path.join(root, n)) for root, _, names in os.walk(text_dir)
             for n in names if n.lower().endswith(".txt")]
    decoded = [t.decode("utf-8") for t in texts]  # All valid UTF-8.
    assert any(not t.isascii() for t in decoded) and any(t.isascii() for t in decoded)
    assert len({len(t) for t in texts}) > 10

    # Seeded: the same arguments give the same bytes.
    again = _make(tmp_path / "again", "text")
    for root, _, names in os.walk(text_dir):
        for name in names:
            path = os.path.join(root, name)
            assert _read(path) == _read(os.path.join(again, os.path.relpath(path, text_dir)))


# --- Files, labels and classes, unshuffled ------------------------------------------------


@pytest.mark.parametrize("trailing_slash", [False, True])
def test_images_match_keras_order_labels_and_classes(image_dir, trailing_slash):
    directory = image_dir + "/" if trailing_slash else image_dir
    paths, labels, class_names = list_labelled_files(directory, IMAGE_EXTENSIONS)
    ds = _keras_images(directory, shuffle=False)
    assert paths == ds.file_paths
    assert class_names == ds.class_names == CLASSES  # Code-point order: "B" before "a".
    assert labels == _labels(ds)


def test_image_listing_details(image_dir):
    """The surprising parts of Keras's listing, spelled out for one class."""
    paths, labels, _ = list_labelled_files(image_dir, IMAGE_EXTENSIONS)
    first = [p for p, label in zip(_rel(image_dir, paths), labels) if label == 0]
    assert first == [
        "A_class/.dot_4.bmp",          # Dot-files count; only dot class folders are skipped.
        "A_class/Zebra.png",           # Upper case sorts before lower case.
        "A_class/img_3.jpg",
        "A_class/img_6.JPG",           # Extensions match case-insensitively.
        "A_class/.thumbs/img_21.jpg",  # Nested dot-folders are walked.
        "A_class/sub/img_9.jpeg",
        "A_class/sub-2/img_18.png",    # Roots sorted as strings: "sub-2" < "sub/deeper".
        "A_class/sub/deeper/img_15.gif",
    ]
    rel = _rel(image_dir, paths)
    assert not [p for p in rel if p.startswith(".hidden") or "/" not in p]
    assert not [p for p in rel if p.endswith((".txt", ".bak"))]


def test_texts_match_keras_contents_labels_and_classes(text_dir):
    paths, labels, class_names = list_labelled_files(text_dir, TEXT_EXTENSIONS)
    ds = _keras_texts(text_dir, shuffle=False)
    assert not hasattr(ds, "file_paths")  # Keras does not expose them for text.
    assert class_names == ds.class_names == CLASSES
    assert [(_read(p), label) for p, label in zip(paths, labels)] == _texts(ds)
    assert any(p.endswith(".TXT") for p in paths)
    assert not [p for p in paths if p.endswith((".md", ".bak")) or "/.hidden/" in p]


def test_class_names_sort_by_code_point(tmp_path):
    names = ["b", "B", "_u", "10", "9", "é", "Z"]
    directory = _make(tmp_path / "names", "text", per_class=2, classes=names)
    paths, labels, class_names = list_labelled_files(directory, TEXT_EXTENSIONS)
    ds = _keras_texts(directory, shuffle=False)
    assert class_names == ds.class_names == ["10", "9", "B", "Z", "_u", "b", "é"]
    assert [(_read(p), label) for p, label in zip(paths, labels)] == _texts(ds)


@pytest.mark.parametrize("given", [
    ["a_class", "A_class"],             # Reordered and a subset: B_class is dropped.
    ["B_class"],
    ["a_class", "B_class", "A_class"],  # All, reversed.
])
def test_given_class_names_match_keras(image_dir, text_dir, given):
    paths, labels, class_names = list_labelled_files(image_dir, IMAGE_EXTENSIONS, given)
    ds = _keras_images(image_dir, shuffle=False, class_names=given)
    assert class_names == ds.class_names == given
    assert paths == ds.file_paths
    assert labels == _labels(ds)
    assert not [p for p in _rel(image_dir, paths) if p.split("/")[0] not in given]

    paths, labels, class_names = list_labelled_files(text_dir, TEXT_EXTENSIONS, tuple(given))
    ds = _keras_texts(text_dir, shuffle=False, class_names=given)
    assert class_names == given
    assert [(_read(p), label) for p, label in zip(paths, labels)] == _texts(ds)


@pytest.mark.parametrize("given", [["A_class", "c_class"], ["b_class"], [".hidden"]])
def test_unknown_class_names_fail_like_keras(image_dir, given):
    with pytest.raises(ValueError, match="did not match"):
        _keras_images(image_dir, shuffle=False, class_names=given)
    with pytest.raises(ValueError, match="did not match") as err:
        list_labelled_files(image_dir, IMAGE_EXTENSIONS, given)
    assert repr([given[-1]]) in str(err.value) and image_dir in str(err.value)


def test_repeated_class_names_are_refused(image_dir):
    with pytest.raises(ValueError, match="repeats"):
        list_labelled_files(image_dir, IMAGE_EXTENSIONS, ["A_class", "A_class"])


# --- Symlinks and remote-style paths ------------------------------------------------------


def test_follow_links_matches_keras(image_dir, tmp_path):
    directory = tmp_path / "links"
    shutil.copytree(image_dir, directory, symlinks=True)
    outside = tmp_path / "outside"
    shutil.copytree(os.path.join(image_dir, "B_class", "sub"), outside)
    os.symlink(outside, directory / "A_class" / "linked")  # A symlinked folder in a class.
    os.symlink(directory / "B_class", directory / "L_class")  # A symlinked class folder.
    for follow in (False, True):
        paths, labels, class_names = list_labelled_files(
            str(directory), IMAGE_EXTENSIONS, follow_links=follow)
        ds = _keras_images(str(directory), shuffle=False, follow_links=follow)
        assert (paths, class_names) == (ds.file_paths, ds.class_names)
        assert labels == _labels(ds)
        assert "L_class" in class_names
        assert any("/A_class/linked/" in p for p in paths) == follow


def test_url_paths_go_through_gfile_like_keras(image_dir):
    url = "file://" + image_dir
    paths, labels, class_names = list_labelled_files(url, IMAGE_EXTENSIONS)
    ds = _keras_images(url, shuffle=False)
    assert (paths, class_names) == (ds.file_paths, ds.class_names)
    assert paths[0].startswith("file://")
    assert labels == list_labelled_files(image_dir, IMAGE_EXTENSIONS)[1]


# --- Training and validation subsets ------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 7, 1337, 2**31 + 5])
@pytest.mark.parametrize("split", [0.1, 0.25, 0.5, 0.9])
def test_image_subsets_match_keras(image_dir, seed, split):
    paths, labels, _ = list_labelled_files(image_dir, IMAGE_EXTENSIONS)
    training, validation = validation_subsets(paths, labels, split, seed)
    train_ds, val_ds = _keras_images(
        image_dir, shuffle=True, seed=seed, validation_split=split, subset="both")
    assert [paths[i] for i in training] == train_ds.file_paths
    assert [paths[i] for i in validation] == val_ds.file_paths
    assert len(validation) == int(split * len(paths))
    assert sorted(training + validation) == list(range(len(paths)))
    if seed == 7:  # Decoding images is the slow part: check labels for one seed.
        assert [labels[i] for i in validation] == _labels(val_ds)  # Never reshuffled.
        # The training dataset is reshuffled by a tf.data buffer on top, so compare counts.
        assert (collections.Counter(labels[i] for i in training)
                == collections.Counter(_labels(train_ds)))


def test_single_subset_calls_match_both(image_dir):
    paths, labels, _ = list_labelled_files(image_dir, IMAGE_EXTENSIONS)
    training, validation = validation_subsets(paths, labels, 0.3, 11)
    for subset, indices in (("training", training), ("validation", validation)):
        ds = _keras_images(image_dir, shuffle=True, seed=11, validation_split=0.3, subset=subset)
        assert ds.file_paths == [paths[i] for i in indices]


@pytest.mark.parametrize("seed", [3, 2024])
def test_text_subsets_match_keras(text_dir, seed):
    paths, labels, _ = list_labelled_files(text_dir, TEXT_EXTENSIONS)
    training, validation = validation_subsets(paths, labels, 0.4, seed)
    train_ds, val_ds = _keras_texts(
        text_dir, shuffle=True, seed=seed, validation_split=0.4, subset="both")
    assert [(_read(paths[i]), labels[i]) for i in validation] == _texts(val_ds)
    assert sorted((_read(paths[i]), labels[i]) for i in training) == sorted(_texts(train_ds))


def test_split_size_uses_keras_float_floor(tmp_path):
    # 0.29 * 100 == 28.999999999999996, so Keras keeps 28 files for validation, not 29.
    directory = _make(tmp_path / "hundred", "text", per_class=25, classes=list("wxyz"))
    paths, labels, _ = list_labelled_files(directory, TEXT_EXTENSIONS)
    assert len(paths) == 100
    for split in (0.29, 0.57):
        _, validation = validation_subsets(paths, labels, split, 5)
        _, val_ds = _keras_texts(
            directory, shuffle=True, seed=5, validation_split=split, subset="both")
        assert [(_read(paths[i]), labels[i]) for i in validation] == _texts(val_ds)
        assert len(validation) == int(split * 100) < round(split * 100)


def test_empty_validation_subset_is_refused(image_dir, tmp_path):
    # One file per class: 3 files, and int(0.2 * 3) == 0.
    directory = tmp_path / "tiny"
    for cls in CLASSES:
        os.makedirs(directory / cls)
        shutil.copy(os.path.join(image_dir, cls, "img_3.jpg" if cls == "A_class" else
                                 "img_6.jpeg" if cls == "B_class" else "img_3.jpeg"),
                    directory / cls)
    directory = str(directory)
    paths, labels, _ = list_labelled_files(directory, IMAGE_EXTENSIONS)
    assert len(paths) == 3
    with pytest.raises(ValueError, match="validation subset would be empty"):
        validation_subsets(paths, labels, 0.2, 1)
    # What Keras does instead: the training slice paths[:-0] is empty...
    with pytest.raises(ValueError, match="No training images found"):
        _keras_images(directory, seed=1, validation_split=0.2, subset="both")
    with pytest.raises(ValueError, match="No images found"):
        _keras_images(directory, seed=1, validation_split=0.2, subset="training")
    # ...and the validation slice paths[-0:] is every file.
    ds = _keras_images(directory, seed=1, validation_split=0.2, subset="validation")
    assert sorted(ds.file_paths) == sorted(paths)
    # One more file per split makes it work: int(0.34 * 3) == 1.
    training, validation = validation_subsets(paths, labels, 0.34, 1)
    assert (len(training), len(validation)) == (2, 1)


@pytest.mark.parametrize("split", [0, 1, 1.5, -0.1, None, True])
def test_bad_validation_split(split):
    with pytest.raises(ValueError, match="validation_split"):
        validation_subsets(["a", "b"], [0, 1], split, 1)


def test_seed_is_required_as_in_keras(image_dir):
    with pytest.raises(ValueError, match="seed"):
        _keras_images(image_dir, shuffle=True, validation_split=0.2, subset="both")
    with pytest.raises(ValueError, match="must provide a `seed`"):
        validation_subsets(["a", "b"], [0, 1], 0.5, None)
    for seed in (-1, 2**32, 1.5, "3"):
        with pytest.raises(ValueError, match="seed"):
            validation_subsets(["a", "b"], [0, 1], 0.5, seed)
    with pytest.raises(ValueError, match="labels"):
        validation_subsets(["a", "b"], [0], 0.5, 1)
    assert validation_subsets(["a", "b"], [0, 1], 0.5, np.int64(4))[1] in ([0], [1])


# --- Clear errors -------------------------------------------------------------------------


def test_missing_directory(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(ValueError, match="does not exist") as err:
        list_labelled_files(missing, IMAGE_EXTENSIONS)
    assert missing in str(err.value)


def test_no_matching_files(image_dir, tmp_path):
    # Only top-level files and a dot-folder: no class holds an image.
    flat = tmp_path / "flat"
    os.makedirs(flat / ".hidden")
    shutil.copy(os.path.join(image_dir, "stray.png"), flat)
    shutil.copy(os.path.join(image_dir, "stray.png"), flat / ".hidden")
    with pytest.raises(ValueError, match="No files") as err:
        list_labelled_files(str(flat), IMAGE_EXTENSIONS)
    assert str(flat) in str(err.value)
    with pytest.raises(ValueError, match="No images found"):
        _keras_images(str(flat), shuffle=False)
    # Classes present, but the wrong kind of file in them.
    with pytest.raises(ValueError, match="No files"):
        list_labelled_files(image_dir, (".wav",))
