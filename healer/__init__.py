"""healer: a self-healing agent for Kubernetes."""
