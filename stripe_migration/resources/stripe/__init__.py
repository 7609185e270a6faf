"""Stripe as the assets use it: the resource (resource.py), its client (client.py), the errors it
raises (errors.py), how a failed answer is read (classify.py) and its statistics (stats.py)."""
