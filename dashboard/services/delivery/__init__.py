"""The sending path, queue lease to SMTP reply; never imports operations, messages or blueprints."""
