"""Entry script of the standalone (PyInstaller) build: clean the environment, then dispatch.

The bootloader leaves its own bookkeeping in the environment: LD_LIBRARY_PATH pointing at the
bundled libraries (the original kept in LD_LIBRARY_PATH_ORIG) and _PYI_* variables. This process
has already loaded its libraries by then, but every child it starts (iptables-restore, nft, a
delegate plugin) would inherit them, and a system tool must not pick up our bundled libcrypto or
libz. So the environment is put back as the caller gave it before any plugin code runs; the
plugins hand `os.environ` on to their delegates.
"""

import os


def restore_environment(environ=os.environ) -> None:
    """Undo the bootloader's changes to `environ`: LD_LIBRARY_PATH back, _PYI_* gone."""
    for key in [k for k in environ if k.startswith("_PYI_")]:
        del environ[key]
    original = environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is not None:
        environ["LD_LIBRARY_PATH"] = original
    else:
        environ.pop("LD_LIBRARY_PATH", None)


if __name__ == "__main__":
    restore_environment()
    from plugins.multicall import main

    main()
