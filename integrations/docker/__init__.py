"""Docker engine: the embedded runtime (one container per replica) and the Docker builder."""
