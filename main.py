"""Cloud Functions entry points: one per deployed function, each thin (decode, call, encode).

The functions (ingest, ingest_pubsub, run_batch, jobs_api, cleanup_jobs) land with the
functions issue; all logic lives in the `functions` package. Keep imported function names
unchanged here: Functions Framework serves a renamed `cloud_event` function as plain HTTP.
"""
