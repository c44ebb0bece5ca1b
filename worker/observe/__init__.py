"""What the workers tell operators about themselves: Prometheus metrics."""
