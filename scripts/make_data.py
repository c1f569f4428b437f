"""Generates seeded synthetic sharded CSV: the bundled sample and large scale-run inputs.

    python scripts/make_data.py --rows 4000 --shards 4 --out examples/sample/data
    python scripts/make_data.py --rows 1000000 --shards 8 --out /tmp/bench --gzip

Columns: id, three floats (f_missing has 5% empty cells), categoricals with about 10,
1,000 and 100,000 Zipf-distributed distinct values, an integer categorical with 50
values, text of 8-20 Zipf tokens from a 20,000-word vocabulary, and a binary label that
depends on several of them (so a model has something to learn). Same seed, same bytes.
"""

import argparse
import gzip
import os

import numpy as np

HEADER = ["id", "f_normal", "f_uniform", "f_missing", "cat_small", "cat_mid", "cat_big",
          "int_cat", "text", "label"]
TEXT_VOCAB = 20_000
CHUNK = 200_000


def _zipf_index(rng, size, n, a=1.3):
    """Zipf-distributed indices in [0, n)."""
    return (rng.zipf(a, size=size) - 1) % n


def _words(n):
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pa", "de", "gu", "ze"]
    words = []
    for i in range(n):
        parts, j = [], i
        while True:
            parts.append(syllables[j % len(syllables)])
            j //= len(syllables)
            if j == 0:
                break
        words.append("".join(parts))
    return np.array(words, dtype=object)


def _chunk(rng, start, size, words):
    f_normal = rng.normal(3.0, 2.0, size)
    f_uniform = rng.uniform(0, 100, size)
    f_missing = rng.lognormal(1.0, 0.5, size)
    missing = rng.random(size) < 0.05
    cat_small = _zipf_index(rng, size, 10)
    cat_mid = _zipf_index(rng, size, 1_000)
    cat_big = _zipf_index(rng, size, 100_000, a=1.1)
    int_cat = rng.integers(0, 50, size) * 7 + 3
    lengths = rng.integers(8, 21, size)
    tokens = _zipf_index(rng, int(lengths.sum()), TEXT_VOCAB, a=1.2)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    positive_word = tokens == 5  # "good" signal for the label
    has_positive = np.add.reduceat(positive_word, bounds[:-1]) > 0
    logit = (0.8 * (f_normal - 3.0) / 2.0 + 1.2 * (cat_small % 3 == 0) - 0.6
             + 1.5 * has_positive - 0.02 * (f_uniform - 50) / 10)
    label = (rng.random(size) < 1 / (1 + np.exp(-logit))).astype(int)
    rows = []
    for i in range(size):
        text = " ".join(words[tokens[bounds[i]:bounds[i + 1]]])
        if i % 97 == 0:
            text = text.capitalize() + "."
        rows.append(
            f"{start + i},{f_normal[i]:.6g},{f_uniform[i]:.6g},"
            f"{'' if missing[i] else format(f_missing[i], '.6g')},"
            f"c{cat_small[i]},m{cat_mid[i]},b{cat_big[i]},{int_cat[i]},{text},{label[i]}\n")
    return "".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--gzip", action="store_true", help="write .csv.gz shards")
    parser.add_argument("--start-id", type=int, default=0,
                        help="first row id (spans of one dataset need distinct ids)")
    args = parser.parse_args()

    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    words = _words(TEXT_VOCAB)
    per_shard = -(-args.rows // args.shards)
    for shard in range(args.shards):
        start = shard * per_shard
        size = max(0, min(per_shard, args.rows - start))
        start += args.start_id
        name = os.path.join(args.out, f"part-{shard:05d}-of-{args.shards:05d}.csv")
        opener = (lambda p: gzip.open(p + ".gz", "wt", compresslevel=6)) if args.gzip \
            else (lambda p: open(p, "w", encoding="utf-8"))
        with opener(name) as f:
            f.write(",".join(HEADER) + "\n")
            for offset in range(0, size, CHUNK):
                f.write(_chunk(rng, start + offset, min(CHUNK, size - offset), words))
    print(f"wrote {args.rows} rows in {args.shards} shards under {args.out}")


if __name__ == "__main__":
    main()
