"""Activities: the workflows' side effects, thin and idempotent, one module per capability (build,
runtime, traffic, catalogue, lanes, janitor, notify)."""
