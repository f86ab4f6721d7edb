"""`twilio-callbacks local`: the whole pipeline on one machine, from the stacks' own templates.

Start order: bind the HTTP port (its URL, under any ``--base-path``, is the
ingest stack's ``PublicBaseUrl``), start moto's server on loopback, expand and
provision every stack under ``aws_stacks/``, seed the auth token secret,
register the stacks with their resolved parameters and outputs in the
emulated CloudFormation (so ``twilio-callbacks status`` and any AWS tool find
them), import the handlers, then start the pollers and serve HTTP.
``LocalPipeline`` does all of it for tests too (ports 0 pick free ports).

Handlers' output and the HTTP API's access log lines land in the stacks' log
groups as on AWS; ``--emulate`` picks the gateway's answers where AWS's
documentation is silent (`GatewayEmulation`); ``update_parameters`` plays a
stack update; while the command runs, bursts of rejected callbacks are
summarised on the console.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import urlsplit

import requests
from moto.server import DomainDispatcherApplication, ThreadedMotoServer, create_backend_app
from werkzeug.serving import make_server

from aws_emulator.aws import Clients, apply_environ, emulator_environment, process_environment
from aws_emulator.functions import FunctionHost, InvocationObserver
from aws_emulator.http_gateway import (
    GatewayEmulation,
    HttpGateway,
    HttpGatewayServer,
    normalised_base_path,
)
from aws_emulator.logs import LogShipper
from aws_emulator.pollers import (
    MAX_BATCHING_WINDOW_SECONDS,
    AsyncSourcePoller,
    EventSourcePoller,
)
from aws_emulator.provision import SUPPORT, Deployment, ProvisionedStack, Provisioner
from aws_emulator.rejections import POLL_SECONDS, RejectionBursts
from aws_emulator.templates import (
    StackTemplate,
    TemplateError,
    discover_stack_folders,
    load_stack,
)
from aws_emulator.traffic import Traffic
from status_callbacks.domain.rejected import REJECTED_PREFIX
from twilio_callbacks_cli.discovery import REJECTED_BUCKET_NAME, REJECTED_PREFIX_OUTPUT

LOG = logging.getLogger("aws_emulator")

DEFAULT_REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
PUBLIC_BASE_URL_PARAMETER = "PublicBaseUrl"
# Names, not secrets.
AUTH_TOKEN_SECRET_PARAMETER = "AuthTokenSecretName"  # noqa: S105
AUTH_TOKEN_KEY = "AUTH_TOKEN"  # noqa: S105
TOKEN_VARIABLE = "TWILIO_AUTH_TOKEN"  # noqa: S105
# The gateway's emulation choices, same syntax as --emulate (e.g. body=base64,missing=fail).
EMULATE_VARIABLE = "TWILIO_CALLBACKS_EMULATE"
# Parameters whose local default differs from the template's (a caller's override still wins).
LOCAL_PARAMETER_DEFAULTS: Mapping[str, str] = {
    # The inbox shows alerts as subscribers receive them (`twilio-callbacks query alerts`, `verify`).
    "AlertsInbox": "Enabled",
}
_REGISTRATION_RESOURCE = "LocalRunnerPlaceholder"
_NEVER = "LocalRunnerNever"


class _ObservedMotoServer(ThreadedMotoServer):
    """moto's threaded server with every request passing through `Traffic` first."""

    def __init__(self, traffic: Traffic, ip_address: str, port: int) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self._traffic = traffic

    def _server_entry(self) -> None:
        app = self._traffic.wrap(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, True)
        self._server_ready_event.set()
        self._server.serve_forever()


class PipelineError(RuntimeError):
    """The local pipeline could not start."""


def _ensure_free(host: str, port: int, option: str) -> None:
    """Fail clearly on a taken port: moto's server thread would die silently and leave start() waiting."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise PipelineError(
                f"{host}:{port} is not available ({error.strerror}); choose another {option}"
            ) from error


def default_stacks_dir() -> Path:
    """``aws_stacks`` of the working directory, else of the repository this package lives in."""
    here = Path.cwd() / "aws_stacks"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[3] / "aws_stacks"


class LocalPipeline:
    """The four stacks running in this process against moto; a context manager for tests.

    ``emulation`` chooses the gateway's answers where AWS's documentation is
    silent (default: ``$TWILIO_CALLBACKS_EMULATE``, else `GatewayEmulation`'s
    defaults); ``base_path`` serves the routes under an API mapping's path.
    """

    def __init__(
        self,
        *,
        aws_port: int = 4566,
        http_port: int = 3000,
        host: str = "127.0.0.1",
        public_url: str | None = None,
        stacks_dir: str | Path | None = None,
        token: str | None = None,
        region: str = DEFAULT_REGION,
        max_batching_window: float = MAX_BATCHING_WINDOW_SECONDS,
        parameter_overrides: Mapping[str, str] | None = None,
        emulation: GatewayEmulation | None = None,
        base_path: str = "",
    ) -> None:
        self.host = host
        self.aws_port = aws_port
        self.http_port = http_port
        self.region = region
        self.stacks_dir = Path(stacks_dir) if stacks_dir else default_stacks_dir()
        supplied = token or os.environ.get(TOKEN_VARIABLE)
        # A token someone supplied may be a real one: it is never printed. A generated one is.
        self.token_generated = not supplied
        self.token = supplied or secrets.token_hex(16)
        self.max_batching_window = max_batching_window
        # Stack parameters to deploy with: ``Name`` for every stack declaring it, ``Stack.Name`` for one.
        self.parameter_overrides = dict(parameter_overrides or {})
        self._public_url = public_url.rstrip("/") if public_url else None
        self.emulation = emulation or GatewayEmulation.parse(os.environ.get(EMULATE_VARIABLE, ""))
        self.base_path = normalised_base_path(base_path)
        self._moto: ThreadedMotoServer | None = None
        # AWS requests by service/operation (the benchmark) and fault injection (reliability tests).
        self.traffic = Traffic()
        self._http: HttpGatewayServer | None = None
        self._host: FunctionHost | None = None
        self._logs: LogShipper | None = None
        self._provisioner: Provisioner | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._saved_environ: dict[str, str | None] = {}
        self.deployment: Deployment | None = None
        self.clients: Clients | None = None
        self.started_in: float = 0.0

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LocalPipeline:
        """Start everything; on failure, stop what already started and raise."""
        started = time.monotonic()
        # moto's server logs every request through werkzeug; the runner logs what matters itself.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - started
        return self

    def _start(self) -> None:
        self._http = HttpGatewayServer(self.host, self.http_port)
        self.http_port = self._http.port
        stacks = [
            self._with_stack_overrides(load_stack(folder, self.region))
            for folder in discover_stack_folders(self.stacks_dir)
        ]
        if not stacks:
            raise PipelineError(f"no stacks (folders with template.yaml) under {self.stacks_dir}")
        _ensure_free(self.host, self.aws_port, "--aws-port/AWS_PORT")
        self._moto = _ObservedMotoServer(self.traffic, self.host, self.aws_port)
        self._moto.start()
        self.aws_port = self._moto.get_host_and_port()[1]
        # moto's state is per process: start from an empty emulator even if this process used moto before.
        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
        change = process_environment(self.endpoint_url, self.region)
        self._saved_environ = {name: os.environ.get(name) for name in change}
        apply_environ(change)
        self.clients = Clients(self.endpoint_url, self.region)
        self._provisioner = Provisioner(
            self.clients,
            region=self.region,
            account_id=ACCOUNT_ID,
            # Where the API's execute-api URL is served locally.
            api_base_url=self.api_base_url + self.base_path,
            parameter_overrides={
                **{name: value for name, value in self.parameter_overrides.items() if "." not in name},
                PUBLIC_BASE_URL_PARAMETER: self.public_url,
            },
        )
        self.deployment = self._provisioner.deploy(stacks)
        self._seed_auth_token()
        for stack in self.deployment.stacks:
            self._register_stack(stack)
        # Lambda and API Gateway ship logs themselves: an internal client, not the pipeline's traffic.
        self._logs = LogShipper(lambda: Clients(self.endpoint_url, self.region, internal=True).logs)
        self._host = FunctionHost(
            self.deployment.functions, emulator_environment(self.endpoint_url, self.region), self._logs
        )
        self._host.load()
        self._start_pollers()
        self._http.serve(
            HttpGateway(
                self.deployment.apis,
                lambda: Clients(self.endpoint_url, self.region).sqs,
                self.domain,
                emulation=self.emulation,
                base_path=self.base_path,
                logs=self._logs,
            )
        )
        for note in self.deployment.notes:
            LOG.info("note: %s", note)

    def stop(self) -> None:
        """Stop pollers, the HTTP server and moto; put the process environment back."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._host is not None:
            self._host.close()
            self._host = None
        if self._logs is not None:
            self._logs.close()
            self._logs = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if self._saved_environ:
            apply_environ(self._saved_environ)
            self._saved_environ = {}

    def add_invocation_observer(self, observer: InvocationObserver) -> None:
        """Have ``observer(function, event, invocation)`` called after every handler invocation."""
        if self._host is None:
            raise PipelineError("the pipeline is not started")
        self._host.add_observer(observer)

    def flush_logs(self, timeout: float = 30.0) -> bool:
        """Wait until every log line written so far is in CloudWatch Logs; False on timeout."""
        return self._logs.flush(timeout) if self._logs is not None else True

    def update_parameters(self, stack_name: str, changes: Mapping[str, str]) -> None:
        """Play a CloudFormation stack update that changes parameters, in place.

        Function environments and outputs are re-resolved (and the registered
        stack's Parameters and Outputs with them); queues, buckets and tables
        keep their contents; changed functions get fresh containers, as Lambda
        gives them after an update. A change that would alter any other
        resource is refused with a PipelineError, and nothing changes.
        """
        if self._provisioner is None or self._host is None:
            raise PipelineError("the pipeline is not started")
        try:
            reconfigured = self._provisioner.update(stack_name, changes)
        except (TemplateError, KeyError) as error:
            raise PipelineError(f"cannot update {stack_name}: {error}") from error
        for function in reconfigured:
            self._host.replace(function)
        self._register_stack(self._deployment().stack(stack_name), update=True)
        LOG.info(
            "updated %s: %s", stack_name, ", ".join(f"{name}={value}" for name, value in changes.items())
        )

    def rejection_bursts(self, interval: float = POLL_SECONDS) -> RejectionBursts:
        """A watcher of the rejected-request store whose ``poll()`` returns one summary line per burst."""
        bucket = self.output(REJECTED_BUCKET_NAME)
        if bucket is None:
            raise PipelineError(f"no stack has the output {REJECTED_BUCKET_NAME}")
        # Watching is the runner's own doing, not the pipeline's traffic.
        s3 = Clients(self.endpoint_url, self.region, internal=True).s3
        prefix = self.output(REJECTED_PREFIX_OUTPUT) or REJECTED_PREFIX
        return RejectionBursts(s3, bucket, prefix, interval=interval)

    def _with_stack_overrides(self, stack: StackTemplate) -> StackTemplate:
        """The stack with ``<stack>.<Parameter>`` overrides and local defaults as its parameters' defaults."""
        prefix = f"{stack.name}."
        given = {
            name[len(prefix) :]: value
            for name, value in self.parameter_overrides.items()
            if name.startswith(prefix)
        }
        unknown = sorted(set(given) - set(stack.parameters))
        if unknown:
            raise PipelineError(f"{stack.name} declares no parameter(s) {', '.join(unknown)}")
        local_defaults = {
            name: value
            for name, value in LOCAL_PARAMETER_DEFAULTS.items()
            if name in stack.parameters and name not in self.parameter_overrides
        }
        chosen = {**local_defaults, **given}
        if not chosen:
            return stack
        parameters = {
            name: {**declaration, "Default": chosen[name]} if name in chosen else declaration
            for name, declaration in stack.parameters.items()
        }
        return replace(stack, template={**stack.template, "Parameters": parameters})

    def __enter__(self) -> LocalPipeline:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    # -- what the pipeline offers -------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.aws_port}"

    @property
    def api_base_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def public_url(self) -> str:
        """Base URL Twilio calls (the ingest stack's PublicBaseUrl): ``--public-url`` (a tunnel),
        else the local gateway, followed by the base path when there is one."""
        return (self._public_url or self.api_base_url) + self.base_path

    @property
    def domain(self) -> str:
        """What ``$context.domainName`` forwards: the public URL's host (and port)."""
        return urlsplit(self.public_url).netloc

    def output(self, key: str) -> str | None:
        """A stack output (resolved to local values) from whichever stack declares it."""
        for stack in self._deployment().stacks:
            if key in stack.outputs:
                return stack.outputs[key][0]
        return None

    def callback_urls(self) -> list[str]:
        """One StatusCallback URL per POST route, with its declared query parameters as placeholders."""
        urls = []
        for api in self._deployment().apis:
            # Under a base path the API mapping stands in for the stage.
            mount = "" if self.base_path else api.stage_prefix
            for route in api.routes:
                if route.method not in ("POST", "ANY"):
                    continue
                url = f"{self.public_url}{mount}{route.path}"
                if route.declared_query:
                    url += "?" + "&".join(f"{name}=<{name}>" for name in route.declared_query)
                urls.append(url)
        return urls

    def _deployment(self) -> Deployment:
        if self.deployment is None:
            raise PipelineError("the pipeline is not started")
        return self.deployment

    # -- start steps --------------------------------------------------------------------------

    def _seed_auth_token(self) -> None:
        names = {
            str(stack.parameters[AUTH_TOKEN_SECRET_PARAMETER])
            for stack in self._deployment().stacks
            if AUTH_TOKEN_SECRET_PARAMETER in stack.parameters
        }
        assert self.clients is not None
        secret = json.dumps({AUTH_TOKEN_KEY: self.token})
        for name in names:
            try:
                self.clients.secretsmanager.put_secret_value(SecretId=name, SecretString=secret)
            except self.clients.secretsmanager.exceptions.ResourceNotFoundException:
                self.clients.secretsmanager.create_secret(
                    Name=name, SecretString=secret, Description="Twilio auth token for the local pipeline"
                )

    def _register_stack(self, stack: ProvisionedStack, update: bool = False) -> None:
        """Make a stack visible to DescribeStacks with its parameters and outputs resolved to local values."""
        assert self.clients is not None
        outputs: dict[str, Any] = {}
        for key, (value, description, export) in stack.outputs.items():
            outputs[key] = {"Value": value}
            if description:
                outputs[key]["Description"] = description
            if export:
                outputs[key]["Export"] = {"Name": export}
        parameters = self._registered_parameters(stack)
        template = {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": (stack.description or f"{stack.name} (local)")[:1024],
            "Parameters": {name: {"Type": "String"} for name in parameters},
            # A template needs a resource; one whose condition is false creates nothing.
            "Conditions": {_NEVER: {"Fn::Equals": ["local", "aws"]}},
            "Resources": {
                _REGISTRATION_RESOURCE: {
                    "Type": "AWS::CloudFormation::WaitConditionHandle",
                    "Condition": _NEVER,
                }
            },
            "Outputs": outputs,
        }
        request = {
            "StackName": stack.name,
            "TemplateBody": json.dumps(template),
            "Parameters": [
                {"ParameterKey": name, "ParameterValue": value} for name, value in parameters.items()
            ],
        }
        if update:
            self.clients.cloudformation.update_stack(**request)
        else:
            self.clients.cloudformation.create_stack(
                **request, Tags=[{"Key": "twilio-callbacks:local", "Value": "true"}]
            )

    def _registered_parameters(self, stack: ProvisionedStack) -> dict[str, str]:
        """The stack's parameter values as deployed; batching windows as the local pollers use them."""
        assert self._provisioner is not None
        resources = self._provisioner.templates[stack.name].resources.values()
        windows = {
            str(window["Ref"])
            for resource in resources
            if resource.get("Type") == "AWS::Lambda::EventSourceMapping"
            and isinstance(
                window := (resource.get("Properties") or {}).get("MaximumBatchingWindowInSeconds"), dict
            )
            and "Ref" in window
        }
        values: dict[str, str] = {}
        for name, value in stack.parameters.items():
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            if name in windows:
                text = f"{min(float(text), self.max_batching_window):g}"
            values[name] = text
        return values

    def _start_pollers(self) -> None:
        deployment = self._deployment()
        assert self._host is not None
        for spec in deployment.event_sources:
            function = deployment.function(spec.function)
            if function is None or not self._host.runnable(function) or not spec.enabled:
                LOG.warning(
                    "event source %s/%s is not polled: no runnable function", spec.stack, spec.logical_id
                )
                continue
            self._threads.append(
                EventSourcePoller(
                    spec,
                    function,
                    host=self._host,
                    sqs=Clients(self.endpoint_url, self.region).sqs,
                    region=self.region,
                    stop=self._stop,
                    max_batching_window=self.max_batching_window,
                )
            )
        for source in deployment.async_sources:
            function = deployment.function(source.target_arn) if ":lambda:" in source.target_arn else None
            if function is not None and not self._host.runnable(function):
                LOG.warning(
                    "%s/%s: function %s is not runnable", source.stack, source.logical_id, function.name
                )
                continue
            self._threads.append(
                AsyncSourcePoller(
                    source,
                    self._host,
                    clients=Clients(self.endpoint_url, self.region),
                    region=self.region,
                    stop=self._stop,
                    function=function,
                    invoke_config=deployment.invoke_config(function) if function else None,
                )
            )
        for thread in self._threads:
            thread.start()

    # -- the banner ---------------------------------------------------------------------------

    def banner(self) -> str:
        """What a person needs to use the running pipeline."""
        deployment = self._deployment()
        lines = [
            f"Twilio status callback pipeline running locally: {len(deployment.stacks)} stacks, "
            f"{len(deployment.functions)} functions, {len(self._threads)} pollers "
            f"(ready in {self.started_in:.1f} s)",
            "",
            "Callback URLs (Twilio StatusCallback):",
            *(f"  {url}" for url in self.callback_urls()),
            "",
            "AWS endpoint, for any AWS tool (aws, boto3, twilio-callbacks status/query):",
            f"  export AWS_ENDPOINT_URL={self.endpoint_url} AWS_REGION={self.region} "
            "AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local",
            f"Region: {self.region}",
        ]
        if self.token_generated:
            lines.append(f"Auth token (generated for this run; set {TOKEN_VARIABLE} to choose): {self.token}")
        else:
            lines.append(f"Auth token: the one you supplied (${TOKEN_VARIABLE}), seeded into Secrets Manager")
        environment = f"AWS_ENDPOINT_URL={self.endpoint_url}"
        lines += [
            "",
            "Try it in another shell (send signs with the token from the local secret):",
            f"  {environment} twilio-callbacks send --kind mixed --count 5 --error-rate 0.4 "
            "--out-of-order --duplicates 0.3",
            f"  {environment} twilio-callbacks status",
        ]
        if self._public_url:
            lines.append(f"Public URL (signatures are checked against it): {self.public_url}")
        if self.base_path:
            lines.append(f"API mapping base path: {self.base_path} (in $context.path, not in the route key)")
        if self.emulation != GatewayEmulation():
            lines.append(f"API Gateway emulation: {self.emulation} (default {GatewayEmulation()})")
        lines += [
            "Logs: each function's log group and the API's access log group in CloudWatch Logs "
            "(aws logs filter-log-events)",
            "",
            "Ctrl-C stops.",
        ]
        return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twilio-callbacks local",
        description="Run the whole status callback pipeline on this machine (moto on loopback, no Docker).",
    )
    parser.add_argument(
        "--aws-port",
        type=int,
        default=int(os.environ.get("AWS_PORT", "4566")),
        help="moto server port (env AWS_PORT)",
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT", "3000")), help="HTTP callback port (env PORT)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address both servers bind to (default 127.0.0.1)"
    )
    parser.add_argument(
        "--public-url",
        help="base URL Twilio calls, e.g. an ngrok https URL; signatures are validated against it",
    )
    parser.add_argument(
        "--base-path",
        default="",
        help="serve every route under this API mapping path, as a custom domain does (e.g. hooks)",
    )
    parser.add_argument(
        "--emulate",
        type=_emulation,
        default=None,
        metavar="NAME=VALUE,...",
        help="API Gateway behaviours AWS does not document: body=text|base64, query=decoded|raw, "
        f"missing=empty|fail (env {EMULATE_VARIABLE}; default {GatewayEmulation()})",
    )
    parser.add_argument("--stacks-dir", type=Path, help="folder of stack folders (default ./aws_stacks)")
    parser.add_argument("--region", default=DEFAULT_REGION, help=argparse.SUPPRESS)
    parser.add_argument(
        "--resource-types",
        action="store_true",
        help="print how each CloudFormation resource type is handled locally, and exit",
    )
    return parser


def _emulation(spec: str) -> GatewayEmulation:
    try:
        return GatewayEmulation.parse(spec)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def resource_type_table() -> str:
    """The support table: each resource type, how it is handled locally, and why."""
    width = max(len(kind) for kind in SUPPORT)
    rows = [f"{'resource type':{width}}  {'handling':10}  note", f"{'-' * width}  {'-' * 10}  ----"]
    for kind, support in sorted(SUPPORT.items(), key=lambda item: (item[1].handling, item[0])):
        rows.append(f"{kind:{width}}  {support.handling:10}  {support.note}")
    rows.append("(any other type is skipped with a note at start-up)")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline in the foreground until SIGINT/SIGTERM; 0 on a clean stop."""
    options = _parser().parse_args(list(argv) if argv is not None else None)
    if options.resource_types:
        print(resource_type_table())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        pipeline = LocalPipeline(
            aws_port=options.aws_port,
            http_port=options.port,
            host=options.host,
            public_url=options.public_url,
            stacks_dir=options.stacks_dir,
            region=options.region,
            emulation=options.emulate,
            base_path=options.base_path,
        )
    except ValueError as error:
        print(f"twilio-callbacks local: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            pipeline.start()
        except Exception as error:
            print(f"twilio-callbacks local: cannot start: {error}", file=sys.stderr)
            return 1
        print(pipeline.banner(), flush=True)
        rejections = pipeline.rejection_bursts()
        while not stop.wait(rejections.interval):
            line = rejections.poll()
            if line:
                print(line, flush=True)
        print("Stopping …", file=sys.stderr, flush=True)
        pipeline.stop()
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
