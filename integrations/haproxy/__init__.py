"""HAProxy: one load balancer per environment, steered over its runtime API without reloads."""
