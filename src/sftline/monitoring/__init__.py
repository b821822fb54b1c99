"""Monitoring: SLIs and SLOs, drift, calibration, the review queue and retraining triggers."""
