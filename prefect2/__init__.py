"""The pipeline as Prefect dynamic flows, one code base for Prefect 2.x and 3.x."""
