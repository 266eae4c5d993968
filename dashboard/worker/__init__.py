"""The worker: `flask worker`, `flask sweep` and the scheduler whose jobs call the services."""
