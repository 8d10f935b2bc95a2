"""Team views: the radiator page and the digest, built from what the areas publish."""
