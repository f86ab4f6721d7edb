"""Tooling for people: the `twilio-callbacks` command and the local pipeline runner."""
