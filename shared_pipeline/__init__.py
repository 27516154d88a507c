"""One ML pipeline (NYC green-taxi trip duration), its failure scenarios and run records.

No orchestrator is imported here: the wirings (prefect1/, prefect2/, airflow/) import this.
"""
