"""Diagnosis: from a finding and the workload's context to a cause, a confidence and an explanation."""
