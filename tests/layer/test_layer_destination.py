"""The destination check: only this API's domain and declared routes are admitted."""

from __future__ import annotations

from status_callbacks.domain.validation import Destination

DOMAIN = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"


def test_the_environment_lists_are_parsed_and_domains_compare_case_insensitively() -> None:
    # Given the validator's environment values, with spaces and an upper-case host
    destination = Destination.of(f" {DOMAIN.upper()} ", "POST /twilio,  POST  /twilio-params,")

    # Then both routes are admitted, and this domain whatever the host's case
    assert destination.admits_route("POST /twilio")
    assert destination.admits_route("POST /twilio-params")
    assert destination.admits_domain(DOMAIN)
    assert destination.admits_domain(DOMAIN.upper())
    # and another host, another route, another method or a path that merely ends like a route are not
    assert not destination.admits_domain("other.example.com")
    assert not destination.admits_route("POST /sms")
    assert not destination.admits_route("GET /twilio")
    assert not destination.admits_route("POST /evil/twilio")
    assert not destination.admits_route("POST /twilio/")


def test_routes_are_checked_by_route_key_so_a_custom_domain_base_path_does_not_matter() -> None:
    # Given the same destination behind a custom domain whose API mapping adds /hooks to the path
    destination = Destination.of(DOMAIN, "POST /twilio,POST /twilio-params")

    # Then the route key API Gateway matched is what counts, not the path it received
    assert destination.admits_route("POST /twilio")
    assert not destination.admits_route("POST /hooks/twilio")


def test_an_empty_destination_checks_nothing() -> None:
    assert Destination().admits_route("POST /anywhere")
    assert Destination().admits_domain("anything.example.com")
    assert Destination.of("", "").admits_route("DELETE /anywhere")
