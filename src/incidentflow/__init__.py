"""incidentflow: an event-sourced stream processor for incidents and changes."""

__version__ = "0.2.0.dev0"
