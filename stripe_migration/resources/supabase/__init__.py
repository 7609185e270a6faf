"""Supabase as the assets use it: the resource (resource.py), its client (client.py), the error it
raises (errors.py), exact numbers in what it reads (exact_json.py) and its statistics (stats.py)."""
