"""The pipeline as Prefect 1 static graphs (`prefect==1.*`, its own venv)."""
