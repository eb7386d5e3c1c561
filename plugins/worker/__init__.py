"""The warm worker: `client` (what a plugin process runs first, with `protocol` and `directory`),
`spawn` (starting a worker) and the worker itself (`startup`, `server` and the modules it uses);
docs/worker-threat-model.md maps each module to what it defends."""
