"""``python -m twilio_callbacks_cli.local``: the runner without the `twilio-callbacks` front door."""

import sys

from twilio_callbacks_cli.local.runner import main

sys.exit(main())
