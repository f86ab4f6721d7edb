"""api.yaml: the routes, the integrations and the one declaration of the custom query parameters."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from status_callbacks.domain.forwarded import parse_forwarded_request
from tests.support import api_gateway
from tests.support.signing import signed_callback

STACK_DIR = api_gateway.REPO_ROOT / "aws_stacks" / "StatusCallbackHandler"
QUERY_ATTRIBUTE = re.compile(r"^Query\.(\d+)\.(.+)$")


def _load_sync_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_api_mapping", STACK_DIR / "sync_api_mapping.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync_api_mapping = _load_sync_module()


def mapping(route: str) -> dict[str, dict[str, str]]:
    return json.loads(api_gateway.integration(route)["requestParameters"]["MessageAttributes"])


def declared_query(route: str) -> list[str]:
    operation = api_gateway.load_api()["paths"][route]["post"]
    return [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]


def test_routes_are_the_contracts_two_posts():
    assert api_gateway.routes() == ["/twilio", "/twilio-params"]


@pytest.mark.parametrize("route", ["/twilio", "/twilio-params"])
def test_each_route_is_a_direct_sqs_send_message_integration(route):
    integration = api_gateway.integration(route)
    assert integration["type"] == "aws_proxy"
    assert integration["integrationSubtype"] == "SQS-SendMessage"
    assert integration["payloadFormatVersion"] == "1.0"
    assert integration["credentials"] == {"Fn::GetAtt": ["ApiToIngestQueueRole", "Arn"]}
    assert integration["requestParameters"]["QueueUrl"] == {"Ref": "IngestQueue"}
    assert integration["requestParameters"]["MessageBody"] == "$request.body"


@pytest.mark.parametrize("route", ["/twilio", "/twilio-params"])
def test_every_forwarded_value_is_marked_so_sqs_never_sees_an_empty_one(route):
    attributes = mapping(route)
    assert len(attributes) <= 10  # SQS's limit per message
    for attribute in attributes.values():
        assert attribute["DataType"] == "String"
        assert attribute["StringValue"].startswith("=${")


@pytest.mark.parametrize("route", ["/twilio", "/twilio-params"])
def test_request_data_the_validator_needs_is_forwarded(route):
    attributes = mapping(route)
    assert attributes["Signature"]["StringValue"] == "=${request.header.x-twilio-signature}"
    assert attributes["Domain"]["StringValue"] == "=${context.domainName}"
    assert attributes["Path"]["StringValue"] == "=${context.path}"
    assert attributes["SourceIp"]["StringValue"] == "=${context.identity.sourceIp}"


def test_query_attributes_follow_the_declared_parameters_names_and_order():
    # Given the query parameters /twilio-params declares (the one place they are written)
    declared = declared_query("/twilio-params")
    assert declared == ["id", "category"]
    # Then the forwarded Query.N.name attributes are exactly those, numbered in declared order
    forwarded = sorted(
        (int(m[1]), m[2], value["StringValue"])
        for name, value in mapping("/twilio-params").items()
        if (m := QUERY_ATTRIBUTE.match(name))
    )
    assert [(position, name) for position, name, _ in forwarded] == list(enumerate(declared, start=1))
    assert [source for *_, source in forwarded] == [f"=${{request.querystring.{n}}}" for n in declared]
    # And /twilio forwards none
    assert not any(QUERY_ATTRIBUTE.match(name) for name in mapping("/twilio"))


def test_declared_query_parameters_are_optional_strings():
    operation = api_gateway.load_api()["paths"]["/twilio-params"]["post"]
    for parameter in operation["parameters"]:
        assert parameter["in"] == "query"
        assert parameter["required"] is False
        assert parameter["schema"] == {"type": "string"}


def test_api_yaml_mapping_is_what_the_sync_script_derives():
    # Given api.yaml as committed
    text = (STACK_DIR / "api.yaml").read_text(encoding="utf-8")
    # Then regenerating the mapping lines from the declarations changes nothing
    assert sync_api_mapping.render(text) == text, "run aws_stacks/StatusCallbackHandler/sync_api_mapping.py"
    assert sync_api_mapping.main(["--check"]) == 0


def test_adding_a_declared_parameter_is_one_edit_plus_the_sync(tmp_path: Path):
    # Given a user declares a third custom parameter in a copy of api.yaml
    text = (STACK_DIR / "api.yaml").read_text(encoding="utf-8")
    declaration = "        - name: category\n"
    extra = (
        "        - name: campaign\n"
        "          in: query\n"
        "          required: false\n"
        "          schema:\n"
        "            type: string\n"
    )
    edited = text.replace(declaration, extra + declaration, 1)
    api_file = tmp_path / "api.yaml"
    api_file.write_text(edited, encoding="utf-8")
    # When the check runs it reports the mapping stale, and the sync rewrites it
    assert sync_api_mapping.main(["--check", "--api", str(api_file)]) == 1
    assert sync_api_mapping.main(["--api", str(api_file)]) == 0
    # Then the new parameter is forwarded in its declared position, and a request carrying it validates
    api = api_gateway.load_api.__wrapped__(api_file)
    attributes = json.loads(
        api["paths"]["/twilio-params"]["post"]["x-amazon-apigateway-integration"]["requestParameters"][
            "MessageAttributes"
        ]
    )
    assert [n for n in attributes if n.startswith("Query.")] == [
        "Query.1.id",
        "Query.2.campaign",
        "Query.3.category",
    ]
    request = signed_callback(
        f"{api_gateway.API_BASE_URL}/twilio-params?id=1&campaign=spring&category=a", {"MessageSid": "SM1"}
    )
    forwarded = api_gateway.forward(request, api)
    assert parse_forwarded_request(forwarded.body, forwarded.attributes).query == (
        ("id", "1"),
        ("campaign", "spring"),
        ("category", "a"),
    )


def test_too_many_custom_parameters_are_refused():
    api = {"paths": {"/x": {"post": {"parameters": [{"name": f"p{i}", "in": "query"} for i in range(7)]}}}}
    with pytest.raises(sync_api_mapping.ApiDefinitionError):
        sync_api_mapping.declared_query_parameters(api, "/x")


def test_parameter_names_the_convention_cannot_carry_are_refused():
    api = {"paths": {"/x": {"post": {"parameters": [{"name": "a.b", "in": "query"}]}}}}
    with pytest.raises(sync_api_mapping.ApiDefinitionError):
        sync_api_mapping.declared_query_parameters(api, "/x")


def test_unknown_route_is_not_found():
    request = signed_callback(f"{api_gateway.API_BASE_URL}/other", {"MessageSid": "SM1"})
    with pytest.raises(api_gateway.RouteNotFoundError):
        api_gateway.forward(request)
