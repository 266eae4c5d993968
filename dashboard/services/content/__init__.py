"""What a notification says: templates, their versions and rendering; imports only core."""
