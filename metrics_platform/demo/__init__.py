"""Demo settings and the sample servers that stand in for external APIs in the demo."""
