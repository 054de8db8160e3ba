"""Development host: local runs, triggers and the Partner Center simulator (never deployed)."""
