"""Puts the repository root on sys.path, so the scripts import `wsss` even where it is not pip-installed
(Snakemake adds this folder to the path of the scripts it runs; so does `python workflow/scripts/x.py`)."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
