"""The tickstrata Kubernetes operator (kopf): ExchangeFeed → collector Deployments and retention CronJobs."""
