"""The use-cases the CLI and the HTTP receiver share: validate, start, steer and read releases,
changes, lanes and builds."""
