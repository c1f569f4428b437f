"""Lets Dataflow workers install beam_pipeline with `--setup_file ./setup.py`.

All metadata lives in pyproject.toml; setuptools reads it from there.
"""

import setuptools

setuptools.setup()
