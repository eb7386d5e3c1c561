"""Stands in for PyInstaller's bootstrap module `pyimod01_archive` in the standalone build.

The stock module reads PyInstaller's compressed PYZ archive (it imports struct, marshal and the
zlib extension on every start). The shipped build has no PYZ archive: every module is a plain
.pyc file in the contents directory (build.spec, `noarchive`), so nothing reads one. build.spec
puts this empty module in its place (docs/startup.md, "Bootstrap").
"""
