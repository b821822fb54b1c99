"""Quality gates: each gate flags examples with a reason; the runner quarantines or warns."""
