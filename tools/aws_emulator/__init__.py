"""The local pipeline runner behind `twilio-callbacks local` (and `make run`).

``LocalPipeline`` starts moto's server on loopback, provisions the four
stacks from their own templates, serves the HTTP routes of ``api.yaml`` and
runs the real handlers in-process; ``main`` is the command.
"""

from aws_emulator.runner import LocalPipeline, main

__all__ = ["LocalPipeline", "main"]
