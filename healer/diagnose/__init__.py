"""Diagnosis: from a finding and the workload's context to a cause and an explanation."""
