"""``python -m twilio_callbacks_cli``: the same as the ``twilio-callbacks`` command."""

import sys

from twilio_callbacks_cli.main import main

sys.exit(main())
