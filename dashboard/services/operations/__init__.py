"""Running the desk: jobs, health, alerts, banners, Home, opens, purge, doctor; imported by none."""
