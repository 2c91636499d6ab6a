#!/usr/bin/env python
import os
import secrets
import sys

# Commands that sign nothing and touch no database, so they run in a bare environment (an outside evaluation
# calls `manage.py routing_score` with no KiwiClaw settings at all). Settings refuse to load without a secret
# key outside debug; these get a throwaway one that nothing can use.
KEYLESS_COMMANDS = {"routing_score"}


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kiwiclaw.settings")
    if len(sys.argv) > 1 and sys.argv[1] in KEYLESS_COMMANDS:
        os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
