"""Helpers shared by the test suites: acting as Twilio and as API Gateway + SQS."""
