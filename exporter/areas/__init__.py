"""Areas: each reads one part of Azure DevOps through the API layer and publishes metric families."""
