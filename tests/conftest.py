pytest_plugins = ["registry_servers"]
