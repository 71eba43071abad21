"""The run driver: CLI, steps, run loop with lock/manifest/log, engine, doctor."""
