"""Consul KV: a lane's fork of the integration-test configuration."""
