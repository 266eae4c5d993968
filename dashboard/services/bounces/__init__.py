"""Who is at fault, bounce intake and the suppression list; never imports delivery or above."""
