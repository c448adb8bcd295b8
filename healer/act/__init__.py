"""Acting on the cluster: the only code that calls the Kubernetes API, and the verifier."""
