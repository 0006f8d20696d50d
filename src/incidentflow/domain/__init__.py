"""The pure core: events, the incident fold, correlation and metric math. No I/O, clock or environment."""
