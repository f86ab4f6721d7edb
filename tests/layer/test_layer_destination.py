"""The destination check: only this API's domain and declared routes are admitted."""

from __future__ import annotations

from status_callbacks.validation import Destination

DOMAIN = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"


def test_the_environment_lists_are_parsed_and_domains_compare_case_insensitively() -> None:
    # Given the validator's environment values, with spaces and an upper-case host
    destination = Destination.of(f" {DOMAIN.upper()} ", "/twilio, /twilio-params,")

    # Then both routes on this domain are admitted, whatever the host's case
    assert destination.admits(DOMAIN, "/twilio")
    assert destination.admits(DOMAIN.upper(), "/twilio-params")
    # and another host, another path or a path that merely ends like a route are not
    assert not destination.admits("other.example.com", "/twilio")
    assert not destination.admits(DOMAIN, "/sms")
    assert not destination.admits(DOMAIN, "/evil/twilio")
    assert not destination.admits(DOMAIN, "/twilio/")


def test_a_public_base_url_replaces_the_domain_check_but_not_the_route_check() -> None:
    # Given the same destination, when the URL is rebuilt from PublicBaseUrl instead of the domain
    destination = Destination.of(DOMAIN, "/twilio,/twilio-params")

    # Then a custom domain is admitted on a declared route only
    assert destination.admits("hooks.example.com", "/twilio", check_domain=False)
    assert not destination.admits("hooks.example.com", "/sms", check_domain=False)


def test_an_empty_destination_checks_nothing() -> None:
    assert Destination().admits("anything.example.com", "/anywhere")
    assert Destination.of("", "").admits("anything.example.com", "/anywhere")
