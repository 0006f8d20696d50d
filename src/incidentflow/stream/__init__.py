"""The Faust worker: topics, agents and tables. Thin: every rule lives in `domain/`."""
