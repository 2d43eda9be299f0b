"""Image registries: the OCI distribution API (docker-registry, Harbor) and Harbor's own API."""
