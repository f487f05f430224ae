"""The runbook language: YAML loaded with its lines, checked against the JSON Schemas, built
into a frozen model, its references resolved, rendered in Jinja2's sandbox, and planned."""
