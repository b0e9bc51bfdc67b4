"""Real servers on loopback for tests, benchmarks and `tickstrata up`: Redis, QuestDB, an S3 server.

Binaries come from `scripts/setup.sh`, which installs them into `.cache/`. Nothing here is used in Kubernetes,
where the chart deploys (or points at) real servers.
"""
