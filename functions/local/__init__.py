"""Development tooling: the local stack, the emulators, the pid file and the sample corpus.

Never imported by the deployed functions (the source archive leaves this package out).
"""
