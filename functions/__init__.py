"""Fanout: serverless ingestion jobs on Google Cloud (Firestore jobs, Cloud Tasks fan-out)."""
