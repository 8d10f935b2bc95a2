"""Configuration: the settings file, environment, sharding and the web config file."""
