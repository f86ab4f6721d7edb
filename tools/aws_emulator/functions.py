"""Run the stacks' Lambda handlers in this process, one invocation at a time.

Each function gets a "container": its handler module, the other modules of
its code folder (``CodeUri``) and the packages of its layers are imported
fresh for it, with its template ``Environment`` set, and kept apart from
other functions' copies. So module-level state behaves as in Lambda:
Powertools' Logger/Metrics read the function's own service name and
namespace, and a handler's per-container caches (settings, boto3 clients)
live exactly as long as the pipeline. When the pipeline stops, the
``sys.modules`` entries it replaced are put back.

Functions share one process and handlers read ``os.environ``; invocations
are therefore serialised by one lock, and each runs with its container's
modules in ``sys.modules`` and its environment set, then removed.

What a handler prints still reaches the runner's console, and, given a
`LogShipper`, each invocation's lines go to the function's log group
(``LoggingConfig.LogGroup``, else ``/aws/lambda/<name>``) framed by Lambda's
``START``/``END``/``REPORT`` lines, one stream per container. ``replace``
gives a function a fresh container, as Lambda does after a configuration
update.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from aws_emulator.aws import apply_environ
from aws_emulator.logs import (
    HANDLER_OUTPUT,
    LogShipper,
    adopt_logger_streams,
    lambda_log_events,
    now_ms,
)
from aws_emulator.provision import FunctionSpec

LOG = logging.getLogger("aws_emulator")

Handler = Callable[[Any, Any], Any]


class FunctionLoadError(RuntimeError):
    """A function's handler cannot be imported."""


class LambdaContext:
    """The context object Lambda passes to a handler (the attributes Powertools reads)."""

    def __init__(self, function: FunctionSpec, log_stream: str, request_id: str | None = None) -> None:
        self.function_name = function.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function.arn
        self.memory_limit_in_mb = function.memory_size
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.log_group_name = function.log_group_name
        self.log_stream_name = log_stream
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + function.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invocation: the handler's return value or the error it raised."""

    result: Any = None
    error: BaseException | None = None
    request_id: str = ""
    duration_ms: float = 0.0
    # CPU time of the handler's own thread: its compute, without the waits on AWS calls.
    cpu_ms: float = 0.0

    @property
    def failed(self) -> bool:
        return self.error is not None

    def error_payload(self) -> dict[str, Any]:
        """The error as Lambda reports it to destinations and dead-letter queues."""
        if self.error is None:
            return {}
        return {
            "errorMessage": str(self.error),
            "errorType": type(self.error).__name__,
            "requestId": self.request_id,
            "stackTrace": traceback.format_exception(self.error)[-6:],
        }


# Called after every invocation with the function, its event and the outcome (the benchmark times them).
InvocationObserver = Callable[[FunctionSpec, Any, Invocation], None]


def log_stream_name() -> str:
    """A new container's log stream, named as Lambda names them."""
    return time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime()) + uuid.uuid4().hex


@dataclass
class _Container:
    handler: Handler
    modules: dict[str, ModuleType]
    log_stream: str
    # Import time, reported once, on the container's first invocation (REPORT's Init Duration).
    init_ms: float | None = None


class FunctionHost:
    """Imports each function's handler into its own container and invokes it with its environment."""

    def __init__(
        self,
        functions: list[FunctionSpec],
        runtime_environment: Mapping[str, str],
        logs: LogShipper | None = None,
    ) -> None:
        self.functions = {function.name: function for function in functions}
        self.runtime_environment = dict(runtime_environment)
        self.logs = logs
        self._containers: dict[str, _Container] = {}
        self._lock = threading.Lock()
        self._isolated: set[str] = set()
        self._saved_modules: dict[str, ModuleType] = {}
        self._added_paths: list[str] = []
        self._observers: list[InvocationObserver] = []

    def add_observer(self, observer: InvocationObserver) -> None:
        """Call ``observer(function, event, invocation)`` after every invocation from now on."""
        self._observers.append(observer)

    def remove_observer(self, observer: InvocationObserver) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def load(self) -> None:
        """Import every runnable function's handler into a fresh container."""
        for function in self.functions.values():
            if function.code_folder is not None:
                with self._lock:
                    self._containers[function.name] = self._import(function)

    def runnable(self, function: FunctionSpec) -> bool:
        return function.name in self._containers

    def replace(self, function: FunctionSpec) -> None:
        """Take a function's new configuration; a runnable one gets a fresh container (new imports)."""
        with self._lock:
            self.functions[function.name] = function
            if function.name in self._containers:
                self._containers[function.name] = self._import(function)

    def _environment(self, function: FunctionSpec, log_stream: str) -> dict[str, str]:
        """The template environment plus what Lambda sets, with the emulator's variables last."""
        return {
            **function.environment,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": function.log_group_name,
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "_HANDLER": function.handler,
            **self.runtime_environment,
        }

    def _import(self, function: FunctionSpec) -> _Container:
        folder = function.code_folder
        module_name, _, attribute = function.handler.rpartition(".")
        if folder is None or not module_name or not attribute:
            raise FunctionLoadError(
                f"{function.logical_id}: handler {function.handler!r} is not module.function"
            )
        if not folder.is_dir():
            raise FunctionLoadError(f"{function.logical_id}: code folder {folder} does not exist")
        own = _top_level_modules(folder)
        for layer in function.layer_folders:
            own |= _top_level_modules(layer) | _top_level_modules(layer / "python")
        self._isolated |= own
        self._evict(own, keep=True)
        path = str(folder)
        if path not in sys.path:
            sys.path.insert(0, path)
            self._added_paths.append(path)
        log_stream = log_stream_name()
        environment = self._environment(function, log_stream)
        previous = {name: os.environ.get(name) for name in environment}
        apply_environ(environment)
        started = time.monotonic()
        try:
            module = importlib.import_module(module_name)
            adopt_logger_streams()
        except Exception as error:
            raise FunctionLoadError(
                f"{function.logical_id}: cannot import {module_name} from {folder}: {error}"
            ) from error
        finally:
            apply_environ(previous)
            modules = self._evict(own, keep=False)
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise FunctionLoadError(f"{function.logical_id}: {module_name} has no function {attribute}")
        return _Container(handler, modules, log_stream, (time.monotonic() - started) * 1000)

    def _evict(self, top_levels: set[str], keep: bool) -> dict[str, ModuleType]:
        """Take modules (and submodules) out of ``sys.modules``; ``keep`` remembers the originals."""
        evicted: dict[str, ModuleType] = {}
        for name in list(sys.modules):
            if name.split(".", 1)[0] in top_levels:
                module = sys.modules.pop(name)
                evicted[name] = module
                if keep and name not in self._saved_modules:
                    self._saved_modules[name] = module
        return evicted

    def close(self) -> None:
        """Put back the modules and import path the pipeline replaced."""
        with self._lock:
            self._evict(self._isolated, keep=False)
            sys.modules.update(self._saved_modules)
            for path in self._added_paths:
                if path in sys.path:
                    sys.path.remove(path)
            self._saved_modules.clear()
            self._added_paths.clear()
            self._containers.clear()
            self._isolated.clear()

    def invoke(self, function: FunctionSpec, event: Any) -> Invocation:
        """Invoke a function synchronously; an exception is captured, as Lambda reports it."""
        with self._lock:
            # The configuration in force now (a poller may hold the one from before an update).
            function = self.functions.get(function.name, function)
            container = self._containers.get(function.name)
            if container is None:
                raise FunctionLoadError(f"{function.logical_id} has no runnable handler")
            context = LambdaContext(function, container.log_stream)
            environment = self._environment(function, container.log_stream)
            init_ms, container.init_ms = container.init_ms, None
            previous: dict[str, str | None] = {name: os.environ.get(name) for name in environment}
            displaced = {name: sys.modules.get(name) for name in container.modules}
            sys.modules.update(container.modules)
            apply_environ(environment)
            started_ms = now_ms()
            started = time.monotonic()
            cpu_started = time.thread_time()
            try:
                with HANDLER_OUTPUT.capturing(record=self.logs is not None) as output:
                    result = container.handler(event, context)
                outcome = Invocation(result=result, request_id=context.aws_request_id)
            except Exception as error:
                outcome = Invocation(error=error, request_id=context.aws_request_id)
            finally:
                duration = (time.monotonic() - started) * 1000
                cpu = (time.thread_time() - cpu_started) * 1000
                ended_ms = now_ms()
                apply_environ(previous)
                # Modules the handler imported lazily belong to its container from now on.
                container.modules.update(self._evict(self._isolated, keep=False))
                for name, module in displaced.items():
                    if module is not None:
                        sys.modules[name] = module
        if self.logs is not None:
            self.logs.put(
                function.log_group_name,
                container.log_stream,
                lambda_log_events(
                    outcome.request_id,
                    output.close(),
                    started_ms=started_ms,
                    ended_ms=ended_ms,
                    duration_ms=duration,
                    memory_size=function.memory_size,
                    init_ms=init_ms,
                    error=outcome.error,
                ),
            )
        if duration > function.timeout * 1000:
            LOG.warning(
                "%s ran %.0f ms, over its %d s Timeout: on AWS it would have been stopped",
                function.logical_id,
                duration,
                function.timeout,
            )
        invocation = Invocation(outcome.result, outcome.error, outcome.request_id, duration, cpu)
        for observer in list(self._observers):
            observer(function, event, invocation)
        return invocation


def _top_level_modules(folder: Path) -> set[str]:
    names = {path.stem for path in folder.glob("*.py")}
    names |= {path.parent.name for path in folder.glob("*/__init__.py")}
    return names
