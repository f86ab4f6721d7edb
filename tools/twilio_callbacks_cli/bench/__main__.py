"""``python -m twilio_callbacks_cli.bench``."""

import sys

from twilio_callbacks_cli.bench.cli import main

sys.exit(main())
