"""Collecting metrics into Frames: the MetricsSource seam and its Prometheus adapter."""
