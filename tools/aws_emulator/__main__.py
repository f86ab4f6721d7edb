"""``python -m aws_emulator``: the runner without the `twilio-callbacks` front door."""

import sys

from aws_emulator.runner import main

sys.exit(main())
