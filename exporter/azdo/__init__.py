"""The Azure DevOps layer: HTTP client, credentials and the knowledge of its REST API."""
