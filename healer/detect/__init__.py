"""Detection: streaming baselines that turn Frames into calibrated anomaly scores and Findings."""
