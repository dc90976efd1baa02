#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    from django.core.management import execute_from_command_line

    from runs.exceptions import ExtensionError

    try:
        execute_from_command_line(sys.argv)
    except ExtensionError as error:  # a team's plug-in or file: say what, not a traceback
        sys.exit(f"Backstop cannot start: {error}")


if __name__ == "__main__":
    main()
