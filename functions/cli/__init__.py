"""The command-line tools: the commands and the HTTP client for the jobs API."""
