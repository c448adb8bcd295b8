"""The simulated cluster: Kubernetes API subset, workloads, faults and a virtual clock."""
