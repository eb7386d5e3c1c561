"""Stands in for PyInstaller's bootstrap script `pyiboot01_bootstrap` in the standalone build.

The stock script also lists the contents directory and stats each of its ≈150 entries on every
start, to put Python eggs on sys.path (the build holds none; ≈0.4 ms a call), and installs the
ctypes and pywin32 hooks (replaced by a no-op / not for Linux). What is left is what a frozen
program needs: the importer set-up and `sys.frozen`. build.spec puts this script in its place
(docs/startup.md, "Bootstrap").
"""

import sys

import pyimod02_importers

pyimod02_importers.install()
if not hasattr(sys, "frozen"):
    sys.frozen = True
if sys.warnoptions:
    import warnings  # noqa: F401 - as the interpreter does when warning options are given
