"""Kubernetes: one Deployment per version, the app's Service as traffic router, through the
official client."""
