"""The suite's plugins. Each module exposes `PLUGIN` (a cni.skel.Plugin) and imports lazily."""
