"""The shared CNI library: spec 1.1.0 and every version back to 0.1.0.

Importing this package is free: submodules are imported by whoever needs them, so a
VERSION call or a DEL never pays for what only ADD uses.
"""

__version__ = "0.1.0"
