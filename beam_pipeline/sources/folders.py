"""Class-per-folder datasets: which files, which labels, which subset.

This module reproduces the file indexing of Keras's ``image_dataset_from_directory`` and
``text_dataset_from_directory`` with ``labels="inferred"`` (Keras 3.15,
``keras/src/utils/dataset_utils.py``: ``index_directory``, ``index_subdirectory``,
``iter_valid_files``, ``get_training_or_validation_split``), so a pipeline fed from these
lists sees the same files, labels, class order and train/validation subsets as a Keras
model trained on the loader would. It reads no file contents and knows nothing about Beam.
"""

import os
import re
from numbers import Integral, Real
from typing import List, Optional, Sequence, Tuple

import numpy as np

# Keras's ALLOWLIST_FORMATS (image_dataset_utils.py) and the text loader's formats.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
TEXT_EXTENSIONS = (".txt",)

# Same pattern as keras.src.utils.file_utils.is_remote_path: these go through tf.io.gfile.
_REMOTE_PATH = re.compile(r"^(/cns|/cfs|/gcs|/hdfs|/readahead|/placer|/tfhub|.*://).*$")


def _is_remote(path: str) -> bool:
    return bool(_REMOTE_PATH.match(str(path)))


def _fs(directory: str):
    """(os-like module, path-like module) for `directory`, chosen as Keras chooses them.

    Keras uses `os`/`os.path` for local paths and `tf.io.gfile` only for remote ones. The
    difference matters: `tf.io.gfile.walk` follows symlinked folders on local disks, while
    `os.walk` does not, and `follow_links=False` must not follow them.
    """
    if _is_remote(directory):
        import tensorflow as tf  # Deferred: importing TF is slow and local paths need none.

        return tf.io.gfile, tf.io.gfile
    return os, os.path


def _walk(directory: str, follow_links: bool):
    """Yields (root, dirs, files) under `directory`, recursively."""
    os_module, _ = _fs(directory)
    if _is_remote(directory):
        # Object stores have no symlinks. (Keras calls os.walk(followlinks=True) here when
        # follow_links=True, which silently finds nothing on gs://; we do not copy that.)
        return os_module.walk(directory)
    # Nested folders are walked either way; follow_links only decides about symlinks
    # (the Keras docstring's "only top-level" is wrong).
    return os.walk(directory, followlinks=follow_links)


def _class_files(
    directory: str, name: str, extensions: Tuple[str, ...], follow_links: bool
) -> List[str]:
    """Matching files under class folder `name` of `directory`, in Keras's order and spelling."""
    _, path_module = _fs(directory)
    class_dir = path_module.join(directory, name)
    dirname = os.path.basename(class_dir)
    files = []
    # Keras sorts the walk by the root path *string*, not depth-first: "c/sub" < "c/sub-2" <
    # "c/sub/x", since "-" sorts before "/". Files are then sorted by name within each root.
    # Only the class-level folders skip dot-names; dot-files and nested dot-folders count.
    for root, _, names in sorted(_walk(class_dir, follow_links), key=lambda entry: entry[0]):
        for fname in sorted(names):
            if fname.lower().endswith(extensions):
                # Built exactly as Keras builds it (relpath normalises the path), so the
                # strings equal the loader's `file_paths`.
                absolute = path_module.join(root, fname)
                relative = path_module.join(dirname, os.path.relpath(absolute, class_dir))
                files.append(path_module.join(directory, relative))
    return files


def list_labelled_files(
    directory: str,
    extensions: Sequence[str],
    class_names: Optional[Sequence[str]] = None,
    follow_links: bool = False,
) -> Tuple[List[str], List[int], List[str]]:
    """Lists a class-per-folder dataset the way Keras's folder loaders do.

    Matches ``image_dataset_from_directory`` / ``text_dataset_from_directory`` with
    ``labels="inferred", shuffle=False``: their ``.file_paths`` order and labels.

    Args:
        directory: local path or any `tf.io.gfile` URL (e.g. ``gs://bucket/data``) whose
            subdirectories are the classes. Files directly in it are ignored.
        extensions: allowed file-name endings, lower case, e.g. `IMAGE_EXTENSIONS`; matched
            case-insensitively (``x.JPG`` counts as ``.jpg``).
        class_names: optional explicit classes. They must all be subdirectories of
            `directory`; their order gives the labels, and subdirectories not listed are
            skipped. Default: every subdirectory not starting with ".", in code-point
            (case-sensitive) order, so "B" comes before "a".
        follow_links: whether to descend into symlinked folders inside a class folder.
            Nested real folders are always included.

    Returns:
        ``(paths, labels, class_names)``: file paths in Keras's order (class by class, then
        folders by path string, then file names, all code-point sorted), an int label per
        path (its class's index in `class_names`), and the class names in label order.

    Raises:
        ValueError: `directory` is missing or not a folder, `class_names` names a folder
            that is not there (or repeats a name), or no file matches `extensions`.
    """
    directory = str(directory)
    extensions = tuple(e.lower() for e in extensions)
    os_module, path_module = _fs(directory)
    if not path_module.isdir(directory):
        # Keras lets os.listdir raise FileNotFoundError; say which directory instead.
        raise ValueError(f"Dataset directory {directory!r} does not exist or is not a directory.")

    subdirs = []
    for entry in sorted(os_module.listdir(directory)):
        if path_module.isdir(path_module.join(directory, entry)) and not entry.startswith("."):
            # tf.io.gfile.listdir marks folders on object stores with a trailing "/".
            subdirs.append(entry.removesuffix("/"))

    if class_names is not None:
        class_names = list(class_names)
        missing = [name for name in class_names if name not in set(subdirs)]
        if missing:
            raise ValueError(
                "The `class_names` passed did not match the names of the subdirectories of "
                f"the target directory {directory!r}: {missing} not found. Expected: "
                f"{subdirs} (or a subset of it), but received: class_names={class_names}"
            )
        duplicates = sorted({name for name in class_names if class_names.count(name) > 1})
        if duplicates:
            # Keras accepts these and lists the folder's files twice, under the last index
            # (leaving the first index without examples); that is never what anyone meant.
            raise ValueError(f"`class_names` repeats {duplicates}: each class must appear once.")
        subdirs = class_names  # Keep the given order: it defines the labels.

    paths: List[str] = []
    labels: List[int] = []
    for label, name in enumerate(subdirs):
        class_files = _class_files(directory, name, extensions, follow_links)
        paths.extend(class_files)
        labels.extend([label] * len(class_files))

    if not paths:
        raise ValueError(
            f"No files with extensions {extensions} found in the class subdirectories of "
            f"{directory!r} (classes: {subdirs}). Files directly in the directory are "
            "ignored: put each class's files in its own subdirectory."
        )
    return paths, labels, list(subdirs)


def validation_subsets(
    paths: Sequence[str],
    labels: Sequence[int],
    validation_split: float,
    seed: int,
) -> Tuple[List[int], List[int]]:
    """Keras's "training" and "validation" subsets of a listed folder dataset.

    Reproduces a loader called with ``shuffle=True, seed=seed,
    validation_split=validation_split`` and ``subset="training"`` / ``"validation"`` /
    ``"both"``: the whole list is shuffled once with ``np.random.RandomState(seed)``, and
    the last ``int(validation_split * len(paths))`` entries of the shuffled list are the
    validation subset, the rest the training subset.

    Args:
        paths: the paths from `list_labelled_files`, in its order.
        labels: their labels (only checked for length: the permutation is the same).
        validation_split: fraction for validation, strictly between 0 and 1.
        seed: the loader's `seed`; Keras requires one whenever it shuffles and splits.

    Returns:
        ``(training, validation)``: lists of indices into `paths`, each in the order of
        Keras's shuffled list (which is the order Keras's ``file_paths`` attribute has; the
        training dataset is reshuffled per epoch on top of that, validation is not).

    Raises:
        ValueError: bad `validation_split` or `seed`, mismatched lengths, or a split that
            leaves the validation subset empty.
    """
    if (isinstance(validation_split, bool) or not isinstance(validation_split, Real)
            or not 0 < validation_split < 1):
        raise ValueError(
            f"`validation_split` must be between 0 and 1, received: {validation_split}")
    if seed is None:
        raise ValueError(
            "If using `validation_split` and shuffling the data, you must provide a `seed` "
            "argument, to make sure that there is no overlap between the training and "
            "validation subset."
        )
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"`seed` must be an integer in [0, 2**32), received: {seed!r}")
    if len(paths) != len(labels):
        raise ValueError(f"Got {len(paths)} paths but {len(labels)} labels.")

    count = len(paths)
    # Exactly Keras's expression: float product, then floor (0.29 * 100 gives 28).
    num_val = int(validation_split * count)
    if num_val == 0:
        # Keras slices paths[:-0], an empty training subset, and fails with "No images
        # found" (or, asked for subset="validation" alone, silently returns every file).
        raise ValueError(
            f"validation_split={validation_split} of {count} files gives "
            f"int({validation_split} * {count}) = 0 validation files, so the validation subset "
            "would be empty (Keras then fails with \"No images found\" / \"No training images "
            "found\"). Use a larger validation_split or more files."
        )

    # Keras shuffles the path list (and the label array with a fresh RandomState(seed));
    # RandomState.shuffle draws the same swaps for any sequence of the same length, so
    # shuffling the indices gives the same permutation.
    order = np.arange(count)
    np.random.RandomState(seed).shuffle(order)
    order = [int(i) for i in order]
    return order[: count - num_val], order[count - num_val :]
