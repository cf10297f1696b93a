"""anomalyforge.deploy: placeholder (filled in below)."""
