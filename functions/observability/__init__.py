"""Observability: structured logs that Cloud Logging reads natively, one trace per job,
and links to a job's logs (Logs Explorer in the cloud, the jobs API locally)."""
