"""``python -m stripe_migration.sandbox.stripe_emulator``: serve the emulator in the foreground."""

from .server import main

main()
