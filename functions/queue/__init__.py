"""Task queues: `protocol.py` (the `TaskQueue` contract), `local.py` (SQLite-backed, with
`dispatcher.py` delivering it over HTTP), and the Cloud Tasks adapter."""
