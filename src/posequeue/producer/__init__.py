"""Submission and ingestion: the submit client, ingest tasks, job tracking, fetching results.

Never imports a model runtime.
"""
