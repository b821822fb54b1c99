"""`sftline serve`: the model server, its deployments, API keys and what it records."""
