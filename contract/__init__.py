"""Formats and names shared by model, study_server and analysis; free of torch and SQL."""
