"""Running the desk: jobs, health, alerts, Home, opens, purge, doctor; never imports accounts."""
