"""REPORT.md, generated from the run records under results/ (and the wirings' marked code)."""
